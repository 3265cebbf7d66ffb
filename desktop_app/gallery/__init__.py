"""The gallery: image files first, everything else is derived from them.

- `storage`: `outputs/YYYY-MM-DD/NNNNN-<seed>.png`, names reserved with hidden markers.
- `metadata`: `ImageMetadata`, A1111 infotext (write + parse), atomic `save_png`, and
  `read_image_metadata` for any image (`readers`, `comfyui` for other tools' formats).
- `index`: the SQLite/FTS5 index in `paths.data_dir()` — disposable, rebuilt from the files;
  favourites and imported folders live in a separate state database that survives rebuilds.
- `trash`: delete with undo (hidden `.trash` holding folder, then the OS trash).
- `thumbnails`: disk cache under `paths.cache_dir()/thumbnails`, keyed by path + mtime.
- `restore`: metadata → GenerationRequest field values for "Use these parameters".
- `commands`: `desktop-app gallery list|rebuild|import`.
Qt view-models are in `desktop_app/state/gallery_*.py`, widgets in `desktop_app/ui/gallery_*.py`.
"""
