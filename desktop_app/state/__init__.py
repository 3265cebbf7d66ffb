"""View-models: QObjects holding what the window shows (no widgets, no torch)."""
