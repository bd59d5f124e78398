"""Small made-up data for the tests: idx encoding and images a CNN can learn."""
import hashlib
import struct

import numpy as np


def idx_bytes(array):
    """Encode a uint8 array in the idx format (magic 0x08, ndim, big-endian sizes)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def fake_images(labels, seed=0):
    """Images a CNN can learn: class c lights up a 4-pixel-wide band at row 2c, plus noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c + 2: 2 * c + 6, 4:24] = 250
    return images
