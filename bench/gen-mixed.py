#!/usr/bin/env python3
"""Write a deterministic mixed benchmark input: gen-mixed.py OUT SIZE_MIB.

Blocks of BLOCK bytes cycle through text, random, text, zeros, so the file is
about 1/2 pg_dump-like text (COPY rows of a few tables, with the repetition a
real dump has: shared names, domains, statuses, timestamps close together),
1/4 incompressible random bytes and 1/4 zeros. Seeded, so reruns are identical.
"""
import random
import sys

BLOCK = 4 << 20
out_path, size = sys.argv[1], int(sys.argv[2]) << 20
rng = random.Random(42)

FIRST = [rng.choice("BCDFGHJKLMNPRSTVWZ") + "".join(rng.choice("aeiou" if i % 2 else "bcdfghklmnprstvz") for i in range(rng.randint(2, 7))) for _ in range(3000)]
LAST = [rng.choice("ABCDEFGHKLMNOPRSTW") + "".join(rng.choice("aeiou" if i % 2 else "bcdfghklmnprstvwz") for i in range(rng.randint(3, 9))) for _ in range(8000)]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "example.org", "hotmail.com", "proton.me"] + [f"{w.lower()}.{t}" for w, t in zip(LAST[:200], ["com", "net", "io", "de", "fr"] * 40)]
STATUS = ["active", "active", "active", "pending", "suspended", "deleted"]
COUNTRY = ["US", "DE", "FR", "GB", "NL", "ES", "IT", "PL", "BR", "IN", "JP", "CA"]
PATHS = ["/api/v1/orders", "/api/v1/users/me", "/login", "/cart", "/checkout", "/static/app.js", "/search", "/health"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0", "curl/8.5.0", "okhttp/4.12.0"]
TABLES = [
    ("public.users", "id, first_name, last_name, email, country, status, created_at, balance"),
    ("public.orders", "id, user_id, status, total, currency, created_at, note"),
    ("public.events", "id, user_id, ts, method, path, status_code, duration_ms, user_agent, ip"),
]
state = {"table": 0, "left": 0, "id": [0, 0, 0], "ts": 1_600_000_000}


def ts(t):
    # A cheap, realistic-looking timestamp text (not calendar-exact).
    d, s = divmod(t, 86400)
    return f"20{20 + d // 365 % 6:02d}-{d // 30 % 12 + 1:02d}-{d % 28 + 1:02d} {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00"


def row(t):
    r, st = rng.random, state
    st["id"][t] += 1
    i = st["id"][t]
    st["ts"] += rng.randint(0, 40)
    if t == 0:
        f, l = rng.choice(FIRST), rng.choice(LAST)
        return (f"{i}\t{f}\t{l}\t{f.lower()}.{l.lower()}{rng.randint(1, 999)}@{rng.choice(DOMAINS)}\t"
                f"{rng.choice(COUNTRY)}\t{rng.choice(STATUS)}\t{ts(st['ts'])}\t{rng.randint(0, 10**7) / 100:.2f}\n")
    if t == 1:
        note = "\\N" if r() < 0.7 else " ".join(rng.choices(LAST, k=rng.randint(2, 8))).lower()
        return (f"{i}\t{rng.randint(1, max(1, st['id'][0]))}\t{rng.choice(STATUS)}\t{rng.randint(100, 10**6) / 100:.2f}\t"
                f"{rng.choice(['EUR', 'USD', 'GBP'])}\t{ts(st['ts'])}\t{note}\n")
    return (f"{i}\t{rng.randint(1, max(1, st['id'][0]))}\t{ts(st['ts'])}\t{rng.choice(['GET', 'GET', 'POST'])}\t{rng.choice(PATHS)}\t"
            f"{rng.choice([200, 200, 200, 201, 304, 404, 500])}\t{rng.randint(1, 900)}\t{rng.choice(AGENTS)}\t"
            f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}\n")


def text_block(n):
    parts, got = [], 0
    while got < n:
        st = state
        if st["left"] == 0:  # end the current table's COPY, start the next one
            t = st["table"] = (st["table"] + 1) % 3
            st["left"] = rng.randint(20_000, 200_000)
            s = ("\\.\n\n" if written or parts else "") + f"--\n-- Data for Name: {TABLES[t][0]}\n--\n\nCOPY {TABLES[t][0]} ({TABLES[t][1]}) FROM stdin;\n"
        else:
            st["left"] -= 1
            s = row(st["table"])
        parts.append(s)
        got += len(s)
    return "".join(parts).encode()[:n]


with open(out_path, "wb") as f:
    written, k = 0, 0
    while written < size:
        n = min(BLOCK, size - written)
        kind = ("text", "random", "text", "zeros")[k % 4]
        f.write(text_block(n) if kind == "text" else rng.randbytes(n) if kind == "random" else bytes(n))
        written, k = written + n, k + 1
