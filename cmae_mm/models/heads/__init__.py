# Each module below registers itself on import; keep one import line per file.
