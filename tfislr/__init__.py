"""tfislr: isolated sign language recognition from MediaPipe landmarks, in TensorFlow/Keras."""

__version__ = "0.1.0"
