"""Units shared by every layer."""

GIB = 1024**3  # bytes in a gibibyte (IEC 80000-13)
