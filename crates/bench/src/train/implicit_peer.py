"""Peer side of `newsrec bench train`: fits the `implicit` library's CPU ALS on the matrix
newsrec wrote, times `fit` alone, and writes the factors back for newsrec to evaluate.

Arguments: the folder holding rows.i32, cols.i32, values.f32 and params.json. Writes
user_factors.f32 and item_factors.f32 (row-major float32) there and prints one JSON line.
"""

import json
import os
import sys
import time

folder = sys.argv[1]
with open(os.path.join(folder, "params.json")) as f:
    p = json.load(f)

# Thread count is fixed before numpy/implicit start their pools.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sparse  # noqa: E402
import implicit  # noqa: E402
from implicit.cpu.als import AlternatingLeastSquares  # noqa: E402

rows = np.fromfile(os.path.join(folder, "rows.i32"), dtype=np.int32)
cols = np.fromfile(os.path.join(folder, "cols.i32"), dtype=np.int32)
values = np.fromfile(os.path.join(folder, "values.f32"), dtype=np.float32)
matrix = sparse.csr_matrix(
    (values, (rows, cols)), shape=(p["users"], p["items"]), dtype=np.float32
)

model = AlternatingLeastSquares(
    factors=p["factors"],
    regularization=p["regularization"],
    alpha=p["alpha"],
    iterations=p["iterations"],
    use_cg=True,
    use_native=True,
    calculate_training_loss=False,
    num_threads=p["threads"],
    random_state=p["seed"],
)
model.cg_steps = p["cg_steps"]
started = time.perf_counter()
model.fit(matrix, show_progress=False)
fit_s = time.perf_counter() - started

np.ascontiguousarray(model.user_factors, dtype=np.float32).tofile(
    os.path.join(folder, "user_factors.f32")
)
np.ascontiguousarray(model.item_factors, dtype=np.float32).tofile(
    os.path.join(folder, "item_factors.f32")
)
print(json.dumps({"fit_s": fit_s, "implicit": implicit.__version__,
                  "factors": int(model.user_factors.shape[1])}))
