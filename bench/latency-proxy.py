#!/usr/bin/env python3
"""A loopback HTTP proxy that adds a fixed latency to every request and counts them, to make a local S3
server (moto) behave like a distant one: `latency-proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS COUNT_FILE`.

Each request is read whole (head and Content-Length body), held for DELAY_MS, forwarded on its own
upstream connection, and its response streamed back; keep-alive connections from the client are kept.
The number of requests so far (by method) is written to COUNT_FILE as JSON after each one, so a benchmark
reads how many requests a command made by subtracting two readings; each request line is appended to
COUNT_FILE.log (to see which requests a command makes).
"""

import asyncio
import json
import sys

LISTEN, UPSTREAM, DELAY, COUNTS = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000, sys.argv[4]
counts = {"total": 0}


def save():
    with open(COUNTS + ".tmp", "w") as f:
        json.dump(counts, f)
    import os

    os.replace(COUNTS + ".tmp", COUNTS)


async def read_chunked(reader):
    """A chunked body, as sent (chunk sizes and the final empty chunk included)."""
    body = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        body += size_line + await reader.readexactly(size + 2)
        if size == 0:
            return body


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    body = b""
    if chunked:
        body = await read_chunked(reader)
    elif length:
        body = await reader.readexactly(length)
    return head, body


async def read_response(reader, method):
    head = await reader.readuntil(b"\r\n\r\n")
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    status = int(head.split(b" ", 2)[1])
    if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
        return head, b""
    if chunked:
        return head, await read_chunked(reader)
    if length is not None:
        return head, await reader.readexactly(length)
    return head, await reader.read()


async def handle(creader, cwriter):
    upstream = None
    try:
        while True:
            try:
                head, body = await read_request(creader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            method = head.split(b" ", 1)[0]
            counts["total"] += 1
            key = method.decode()
            counts[key] = counts.get(key, 0) + 1
            save()
            with open(COUNTS + ".log", "ab") as f:
                f.write(head.split(b"\r\n", 1)[0] + b"\n")
            await asyncio.sleep(DELAY)
            if upstream is None:
                upstream = await asyncio.open_connection("127.0.0.1", UPSTREAM)
            ureader, uwriter = upstream
            uwriter.write(head + body)
            await uwriter.drain()
            try:
                rhead, rbody = await read_response(ureader, method)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            cwriter.write(rhead + rbody)
            await cwriter.drain()
            if b"connection: close" in rhead.lower():
                upstream[1].close()
                upstream = None
    finally:
        if upstream is not None:
            upstream[1].close()
        cwriter.close()


async def main():
    save()
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    async with server:
        await server.serve_forever()


asyncio.run(main())
