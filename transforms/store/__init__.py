"""The store: one folder per published version, each a manifest and sorted Parquet tables.

    layout.py     where files lie (versions, scratch, lock), byte-level reads and writes
    writer.py     tables written as sorted, sharded Parquet files (WriteTable, vector files)
    publish.py    a version's manifest, written last (PublishVersion, ManifestInfo)
    lock.py       the writer lock (StoreLock)
    reader.py     a published version, every file checked against its manifest (StoreVersion)
    documents.py  documents rebuilt from occurrences and units, checked against their sha256
"""
