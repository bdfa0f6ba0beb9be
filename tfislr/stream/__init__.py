"""Signs in a continuous stream: landmark frames of any length → a timeline of signs.

The competition's model reads one isolated sign a clip, so a stream is first cut into
candidate sign segments, and each segment is classified as a clip:

| module         | job                                                                       |
| -------------- | ------------------------------------------------------------------------- |
| `segmentation` | frame by frame: hands entering / leaving the signing space, pauses in the  |
|                | hands' motion, a maximum length → segments `[start, end]` with their frames |
| `recognizer`   | segments → signs through a classifier (a `TFLiteRunner`: raw `[T, 543, 3]`  |
|                | → probabilities), optional boundary refinement and a confidence threshold |
| `windows`      | the baseline: fixed sliding windows, consecutive equal labels merged       |
| `sources`      | frames from a landmark parquet file (read in batches) or a video / camera   |
|                | (the extraction environment in a subprocess, frames through a pipe)        |
| `report`       | the recognized signs as a table, JSON or CSV                               |
| `scoring`      | word error rate and boundary error against a true timeline                 |

Memory is bounded whatever the stream's length: a segment holds at most `max_frames`
frames, and nothing else keeps frames. Nothing here imports TensorFlow (the exported
`.tflite` holds the preprocessing; ai-edge-litert runs it).
"""
