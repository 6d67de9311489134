import os
import sys
from pathlib import Path

# NOTE: the CUDA tests run on Numba's CUDA simulator unless a real GPU is present; the switch must
# be set before numba is first imported, so it lives here, before any test module is collected.
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
