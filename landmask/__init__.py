"""landmask: facial landmarks with a small CNN of its own, and lip/eye masking.

Nothing is loaded at import time; ``landmask.load()`` loads the models once.
"""
__version__ = "0.1.0"

__all__ = ["load", "mask", "read_image", "write_image", "decode_image", "encode_image", "Face", "Landmarker", "LandmaskError", "VideoMasker", "draw"]


def __getattr__(name):  # lazy: importing landmask costs nothing until a name is used
    if name in ("load", "mask", "Face", "Landmarker"):
        from landmask import api
        return getattr(api, name)
    if name in ("read_image", "write_image", "decode_image", "encode_image"):
        from landmask import imageio
        return getattr(imageio, name)
    if name == "draw":
        from landmask.drawing import draw_faces
        return draw_faces
    if name == "VideoMasker":
        from landmask.video import VideoMasker
        return VideoMasker
    if name == "LandmaskError":
        from landmask.errors import LandmaskError
        return LandmaskError
    raise AttributeError(f"module 'landmask' has no attribute {name!r}")
