"""Videos → landmark files in the competition's layout, and back to a sign with `predict`.

The extraction runs MediaPipe Holistic, which cannot share an environment with TensorFlow
(see requirements-extract.txt), so this package is split by environment:

| module        | runs in                  | job                                                    |
| ------------- | ------------------------ | ------------------------------------------------------ |
| `layout`      | both (numpy, pyarrow)    | `[T, 543, 3]` frames → one Kaggle-layout parquet file  |
| `holistic`    | extraction env           | a video file → `[T, 543, 3]` frames (MediaPipe)        |
| `extract`     | extraction env           | videos and folders → a data dir; the `tfislr-extract` command |
| `environment` | main env                 | finds the extraction env and runs `extract` in it      |
| `live`        | extraction env (protocol: both) | a video or a camera → frames on a pipe, as they come (`tfislr-stream`) |

Nothing here imports TensorFlow; the parquet files are the interface between the two, and
`live`'s pipe for a stream.
"""
