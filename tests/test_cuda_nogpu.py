"""test_cuda_nogpu.py -- what the CUDA side of layerwise does on a machine
without a usable GPU (CI): importing works, backend_info reports the build, and
asking for a CUDA handle fails with a clear error instead of crashing. Needs
neither CuPy nor a GPU; skipped where a GPU is present."""
import pytest

import layerwise
from layerwise import _core


def test_backend_info_reports_cuda_build():
    info = layerwise.backend_info()
    assert info["cuda_compiled"] == bool(_core.cuda_compiled())
    assert info["cuda_devices"] >= 0
    if not info["cuda_compiled"]:
        assert info["cuda_devices"] == 0


@pytest.mark.skipif(_core.cuda_device_count() > 0, reason="a CUDA GPU is present")
def test_cuda_handle_fails_cleanly_without_gpu():
    with pytest.raises(RuntimeError) as e:
        _core.Handle("cuda")
    msg = str(e.value)
    if _core.cuda_compiled():
        assert "LW_STATUS_EXECUTION_FAILED" in msg and "CUDA" in msg
    else:
        assert "LW_STATUS_NOT_SUPPORTED" in msg
    # the CPU side is unaffected
    _core.Handle("cpu")
