"""The process environment the container image sets (Dockerfile ENV), so that benchmarks and
the soak measure what ships. tests/test_image.py checks the Dockerfile sets the same values."""

IMAGE_ENV = {
    # glibc raises its mmap threshold after large buffers are freed, and later large buffers
    # then stay on the heap: RSS ratchets up by 15 MiB and more under big metric bodies and
    # annotations. A fixed threshold returns such memory at once (soak: 74 -> 59.5 MiB).
    "MALLOC_MMAP_THRESHOLD_": "131072",
    "MALLOC_TRIM_THRESHOLD_": "131072",
}
