"""Datasets: ingestion into NVIDIA's layout, validation, the demo shapes set, the reader (specs: stylegan_core.spec).

Modules (imported individually, so the training reader does not pull in pandas or Great Expectations):

* `ingest` — `prepare_dataset`, `prepare_from_spec`, `materialize_source`, `inventory_source`.
* `validate` — `validate_manifest` (Great Expectations on the Parquet manifest).
* `dataset` — `ImageDataset`, `content_hash` (the training-time reader).
* `shapes` — the procedural shapes generator; `cifar10` — CIFAR-10 python batches → a source folder.
* `options` — `IngestOptions` (ingestion defaults), `DatasetError`, and the conversion rules in its docstring.
"""
