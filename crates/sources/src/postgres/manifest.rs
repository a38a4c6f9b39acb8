//! Backup manifests in PostgreSQL's own format (version 1, as `pg_basebackup` writes them), so that
//! `pg_verifybackup` can check a restored data directory against what a local base backup read: every
//! file's size and CRC-32C, the WAL range, and the manifest's own SHA-256.

use bunker_engine::archiver::FileDigest;
use sha2::{Digest, Sha256};

/// Renders a manifest. Checksums are written as PostgreSQL does: the CRC's four bytes in memory
/// (little-endian) order, in hex. The manifest checksum is the SHA-256 of everything up to and including
/// the newline before its own line.
pub fn render(files: &[FileDigest], timeline: u32, start_lsn: &str, end_lsn: &str) -> String {
    let mut out = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
    for (i, f) in files.iter().enumerate() {
        let modified = chrono::DateTime::from_timestamp(f.mtime, 0)
            .unwrap_or_default()
            .format("%Y-%m-%d %H:%M:%S GMT")
            .to_string();
        out.push_str(&format!(
            "{{ \"Path\": {}, \"Size\": {}, \"Last-Modified\": \"{modified}\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{}\" }}{}\n",
            serde_json::Value::String(f.path.clone()),
            f.size,
            hex::encode(f.crc32c.to_le_bytes()),
            if i + 1 < files.len() { "," } else { "" }
        ));
    }
    out.push_str(&format!(
        "],\n\"WAL-Ranges\": [\n{{ \"Timeline\": {timeline}, \"Start-LSN\": \"{start_lsn}\", \"End-LSN\": \"{end_lsn}\" }}\n],\n"
    ));
    let checksum = hex::encode(Sha256::digest(out.as_bytes()));
    out.push_str(&format!("\"Manifest-Checksum\": \"{checksum}\"}}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_json_with_a_checksum_over_all_but_their_last_line() {
        let files = vec![
            FileDigest { path: "PG_VERSION".into(), size: 3, mtime: 0, crc32c: 0xE306_9283 },
            FileDigest { path: "base/1/\"odd\"".into(), size: 0, mtime: 1_700_000_000, crc32c: 0 },
        ];
        let m = render(&files, 1, "0/2000028", "0/2000100");
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        assert_eq!(v["Files"][0]["Checksum"], "839206e3");
        assert_eq!(v["Files"][1]["Path"], "base/1/\"odd\"");
        assert_eq!(v["Files"][1]["Last-Modified"], "2023-11-14 22:13:20 GMT");
        assert_eq!(v["WAL-Ranges"][0]["End-LSN"], "0/2000100");
        let body_end = m[..m.len() - 1].rfind('\n').unwrap() + 1;
        assert_eq!(v["Manifest-Checksum"], hex::encode(Sha256::digest(&m.as_bytes()[..body_end])));
        assert_eq!(bunker_engine::archiver::crc32c(b"123456789"), 0xE306_9283);
    }
}
