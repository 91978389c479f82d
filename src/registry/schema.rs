//! The registry schema as numbered migrations; `PRAGMA user_version` records how far a
//! database has been brought. Migrations only ever get appended.

/// Migration N brings a database from user_version N to N+1.
pub const MIGRATIONS: &[&str] = &[
    // 1: stores, entries, pins, tags, audit.
    r#"
    CREATE TABLE stores (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE entries (
        id         INTEGER PRIMARY KEY,
        store_id   INTEGER NOT NULL REFERENCES stores(id),
        path       BLOB NOT NULL,          -- relative to the store root, raw bytes
        size       INTEGER NOT NULL,
        mtime      INTEGER NOT NULL,       -- ns since the epoch
        ino        INTEGER NOT NULL,       -- a new inode under the same name is a new file
        first_seen INTEGER NOT NULL,       -- ns since the epoch (of this inode)
        class      TEXT,                   -- NULL: matches no class, never touched
        state      TEXT NOT NULL DEFAULT 'present',
        seen_gen   INTEGER NOT NULL,       -- scan generation that last saw it
        UNIQUE (store_id, path)
    );
    CREATE INDEX entries_class ON entries(class, store_id);
    -- Pins live apart from entries so that a pin outlives a file that disappears for a
    -- while (an unmounted disk, a move out and back): it is never lost by a rescan.
    CREATE TABLE pins (
        store_id INTEGER NOT NULL REFERENCES stores(id),
        path     BLOB NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (store_id, path)
    ) WITHOUT ROWID;
    CREATE TABLE tags (
        entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
        tag      TEXT NOT NULL,
        PRIMARY KEY (entry_id, tag)
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,          -- ns since the epoch
        store   TEXT NOT NULL,
        path    BLOB NOT NULL,
        action  TEXT NOT NULL,             -- delete, retain, unretain
        outcome TEXT NOT NULL,             -- deleted, refused, failed, vanished, done
        class   TEXT,
        rule    TEXT,
        reason  TEXT NOT NULL,
        trigger TEXT NOT NULL,             -- schedule, gc, cli, api, pressure
        bytes   INTEGER
    );
    CREATE INDEX audit_path ON audit(store, path);
    CREATE INDEX audit_at ON audit(at);
    "#,
    // 2: leases — "I am using this" from any process, persisted, expiring on their own.
    r#"
    CREATE TABLE leases (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a stale id stays stale
        store   TEXT NOT NULL,
        pattern BLOB NOT NULL,                      -- a relative path, or a glob
        glob    INTEGER NOT NULL,
        holder  TEXT NOT NULL,
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL
    );
    CREATE INDEX leases_expires ON leases(expires);
    "#,
    // 3: under disk pressure, a class's oldest files are read a page at a time; this index
    // (with the rowid as tie-break) serves that and the planner's newest-first walk. Classes
    // aging by first_seen (rare: imported files) sort their rows per page instead — a
    // second index cost the 100k-file first index 0.07 s (1.41x find became 1.63x).
    r#"
    CREATE INDEX entries_class_mtime ON entries(class, store_id, mtime);
    DROP INDEX entries_class;
    "#,
    // 4: offload — the verified remote copy of a local file (of the version that was
    // copied: size and mtime), and the multipart uploads in progress, so that a crash
    // mid-upload leaves an id to abort on restart.
    r#"
    CREATE TABLE copies (
        store_id INTEGER NOT NULL REFERENCES stores(id),
        path     BLOB NOT NULL,          -- the local file
        size     INTEGER NOT NULL,       -- of the local file when it was copied
        mtime    INTEGER NOT NULL,
        remote   TEXT NOT NULL,          -- the S3 store
        key      BLOB NOT NULL,          -- its key there
        checksum TEXT NOT NULL,          -- the ETag the server computed, checked
        at       INTEGER NOT NULL,
        PRIMARY KEY (store_id, path)
    ) WITHOUT ROWID;
    CREATE INDEX copies_remote ON copies(remote, key);
    CREATE TABLE uploads (
        id        INTEGER PRIMARY KEY,
        remote    TEXT NOT NULL,
        key       BLOB NOT NULL,
        upload_id TEXT NOT NULL,
        started   INTEGER NOT NULL
    );
    "#,
    // 5: offloads that keep failing back off per file; remembered here so that a restart
    // or a one-shot `gc` from cron does not hammer a server that lies or refuses.
    r#"
    CREATE TABLE offload_backoff (
        store_id INTEGER NOT NULL REFERENCES stores(id),
        path     BLOB NOT NULL,          -- the local file
        failures INTEGER NOT NULL,       -- in a row
        next_at  INTEGER NOT NULL,       -- not tried again before (ns since the epoch)
        last     TEXT NOT NULL,          -- the last failure, in words
        PRIMARY KEY (store_id, path)
    ) WITHOUT ROWID;
    "#,
    // 6: the uid that took each lease (NULL: before owners were recorded — root's). A
    // client of the socket may renew and release only its own, and hold a bounded number.
    r#"
    ALTER TABLE leases ADD COLUMN owner INTEGER;
    CREATE INDEX leases_owner ON leases(owner);
    "#,
    // 7 (issue 10): deletion intents. A chunk's intents are committed in one transaction
    // before any of its files is unlinked; the chunk's audit records replace them in one
    // transaction after. What a kill -9 leaves here is reconciled at the next start: a
    // file gone is audited as deleted, a file still there is dropped.
    r#"
    CREATE TABLE intents (
        id       INTEGER PRIMARY KEY,
        at       INTEGER NOT NULL,
        store    TEXT NOT NULL,
        path     BLOB NOT NULL,
        entry_id INTEGER NOT NULL,       -- the entry to forget once it is gone
        ino      INTEGER NOT NULL,       -- the inode that was checked
        size     INTEGER NOT NULL,
        mtime    INTEGER NOT NULL,
        class    TEXT,
        rule     TEXT,
        reason   TEXT NOT NULL,
        trigger  TEXT NOT NULL
    );
    "#,
    // 8 (issue 13): what a media server said about a file (a webhook): this version (size
    // and mtime) of it is a complete recording, so no quiet period is waited out for it.
    r#"
    CREATE TABLE facts (
        store_id INTEGER NOT NULL REFERENCES stores(id),
        path     BLOB NOT NULL,
        size     INTEGER NOT NULL,       -- the version the server announced
        mtime    INTEGER NOT NULL,
        at       INTEGER NOT NULL,       -- when (ns since the epoch)
        source   TEXT NOT NULL,          -- e.g. "nginx-rtmp record_done"
        PRIMARY KEY (store_id, path)
    ) WITHOUT ROWID;
    CREATE INDEX facts_at ON facts(at);
    "#,
    // 9 (issue 16): BLAKE3 hashes of files of dedupe classes, of one version each (size,
    // mtime, inode as the entry has them, and the inode's change time, which no one can set
    // back: a rewrite in place with its mtime restored still moves it): a file is hashed once
    // and again only when it changes. Only files with a same-size sibling in their class are
    // hashed; `dev` and `nlink` (at hashing) tell hard links apart from copies. The index
    // finds same-size siblings. The triggers drop a hash with its entry's version, in the
    // writer's own transaction, so no row outlives the file version it describes.
    r#"
    CREATE TABLE hashes (
        store_id INTEGER NOT NULL REFERENCES stores(id),
        path     BLOB NOT NULL,
        size     INTEGER NOT NULL,       -- the version that was hashed
        mtime    INTEGER NOT NULL,
        ino      INTEGER NOT NULL,
        ctime    INTEGER NOT NULL,       -- st_ctime (ns) when it was hashed
        dev      INTEGER NOT NULL,
        nlink    INTEGER NOT NULL,       -- names of the inode when it was hashed
        blake3   BLOB NOT NULL,          -- 32 bytes
        at       INTEGER NOT NULL,       -- when (ns since the epoch)
        PRIMARY KEY (store_id, path)
    ) WITHOUT ROWID;
    CREATE INDEX entries_class_size ON entries(class, store_id, size);
    CREATE TRIGGER hashes_entry_gone AFTER DELETE ON entries BEGIN
        DELETE FROM hashes WHERE store_id = OLD.store_id AND path = OLD.path;
    END;
    CREATE TRIGGER hashes_entry_changed AFTER UPDATE OF size, mtime, ino ON entries
    WHEN OLD.size <> NEW.size OR OLD.mtime <> NEW.mtime OR OLD.ino <> NEW.ino BEGIN
        DELETE FROM hashes WHERE store_id = OLD.store_id AND path = OLD.path;
    END;
    "#,
    // 10 (issue 23): the registry's identity, a random id that `registry.id` beside it
    // repeats (identity.rs): a registry that is empty or not this directory's is refused.
    r#"
    CREATE TABLE identity (
        id      TEXT NOT NULL,           -- 128 random bits, hex
        created INTEGER NOT NULL         -- ns since the epoch
    );
    "#,
    // 11 (issue 25): `history` reads the audit newest first, filtered by class, outcome
    // or trigger: each filter walks its own index in time order (the rowid breaks ties),
    // so a page costs its own rows, not the whole audit, and nothing is sorted. Every
    // deletion writes an audit record, so each index is paid by every pass: the outcome
    // and trigger indexes hold only the unusual records (not deleted; not by the schedule),
    // which are what they are asked for — an ordinary scheduled deletion adds nothing to
    // them. A rule, or a store alone, walks audit_at (rarely selective); a path uses
    // audit_path.
    r#"
    CREATE INDEX audit_class_at ON audit(class, at);
    CREATE INDEX audit_outcome_at ON audit(outcome, at) WHERE outcome <> 'deleted';
    CREATE INDEX audit_trigger_at ON audit(trigger, at) WHERE trigger <> 'schedule';
    "#,
    // 12 (issue 25 item 4): each local store's root as it was when last used — its device
    // and whether it was a mount point — so that the bare directory under an unmounted
    // filesystem is never taken for the store (store/local.rs find_root).
    r#"
    CREATE TABLE store_roots (
        store_id    INTEGER PRIMARY KEY REFERENCES stores(id),
        dev         INTEGER NOT NULL,    -- st_dev
        mount_point INTEGER NOT NULL,    -- 1: the root of a mounted filesystem
        at          INTEGER NOT NULL     -- when recorded (ns since the epoch)
    );
    "#,
    // 13 (issue 26): tags as a rowid table. Every deleted entry runs the ON DELETE CASCADE
    // into tags; tags itself holds a foreign key, so SQLite deletes its rows in two passes,
    // and for a WITHOUT ROWID table the first pass collects their keys in a temporary
    // b-tree — opened, paged and freed once per deleted file (about 20k instructions of
    // the ~60k the recorder spent per file). A rowid table collects rowids in memory.
    r#"
    CREATE TABLE tags_new (
        entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
        tag      TEXT NOT NULL,
        UNIQUE (entry_id, tag)
    );
    INSERT INTO tags_new(entry_id, tag) SELECT entry_id, tag FROM tags;
    DROP TABLE tags;
    ALTER TABLE tags_new RENAME TO tags;
    "#,
];

#[cfg(test)]
mod tests {
    /// docs/design.md lists every migration, one row each, in order.
    #[test]
    fn the_design_page_lists_every_migration() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/design.md");
        let page = std::fs::read_to_string(&path).unwrap();
        let listed: Vec<usize> = page
            .lines()
            .filter_map(|l| l.strip_prefix("| "))
            .filter_map(|l| l.split(" |").next()?.parse().ok())
            .collect();
        let all: Vec<usize> = (1..=super::MIGRATIONS.len()).collect();
        assert_eq!(
            listed,
            all,
            "{}: the registry table must have one row per migration of schema.rs",
            path.display()
        );
    }
}
