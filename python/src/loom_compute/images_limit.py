"""The one pixel limit of the data plane, shared with TypeScript (src/images/image.ts
MAX_IMAGE_PIXELS) through vectors/limits.json; both sides test that they equal it.

It is PIL's default decompression-bomb threshold (2**30 // 4 // 3), so an image PIL would only
warn about is already a bad sample (`image_too_large`) here, as it is in the TS reader.
"""

MAX_IMAGE_PIXELS = 89_478_485
