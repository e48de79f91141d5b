"""Provider resolution: auto picks CUDA only when it really works, cuda never falls back silently."""

from __future__ import annotations

import pytest

from onnxgraph.errors import OnnxGraphError
from onnxgraph.runtime import providers
from onnxgraph.runtime.providers import CPU, CUDA, CudaStatus, ProviderError, resolve_providers

CUDA_USABLE = providers.cuda_status().usable


def test_cpu_is_cpu_only():
    assert resolve_providers("cpu") == (CPU,)


def test_unknown_choice_is_a_user_error():
    with pytest.raises(ProviderError, match="unknown provider 'tpu'"):
        resolve_providers("tpu")
    assert issubclass(ProviderError, OnnxGraphError)


def test_auto_follows_a_real_probe_and_prints_no_cuda_noise(capfd):
    providers.cuda_status.cache_clear()
    chosen = resolve_providers("auto")
    out, err = capfd.readouterr()
    assert chosen == ((CUDA, CPU) if providers.cuda_status().usable else (CPU,))
    assert "CUDA" not in err and "onnxruntime" not in err and out == ""


def test_cuda_without_cuda_raises_with_the_reason(monkeypatch):
    monkeypatch.setattr(providers, "cuda_status", lambda: CudaStatus(False, "libcublasLt.so.13: not found"))
    with pytest.raises(ProviderError, match="CUDA is not active: libcublasLt.so.13: not found"):
        resolve_providers("cuda")
    assert resolve_providers("auto") == (CPU,)


@pytest.mark.skipif(CUDA_USABLE, reason="a CUDA session can be created here")
def test_probe_explains_why_cuda_is_unusable_on_this_machine():
    status = providers.cuda_status()
    assert not status.usable and status.reason
    with pytest.raises(ProviderError, match="CUDA is not active"):
        resolve_providers("cuda")


@pytest.mark.skipif(not CUDA_USABLE, reason="no CUDA session can be created here")
def test_cuda_session_really_runs_on_cuda():
    from onnxgraph.runtime.sessions import create_session

    chosen = resolve_providers("cuda")
    session = create_session(providers._probe_model(), providers=chosen)
    assert providers.active_provider(session, chosen) == CUDA


def test_active_provider_refuses_a_cuda_session_that_fell_back_to_cpu():
    class FellBack:
        def get_providers(self):
            return [CPU]

    with pytest.raises(ProviderError, match="created the session on CPU"):
        providers.active_provider(FellBack(), (CUDA, CPU))
    assert providers.active_provider(FellBack(), (CPU,)) == CPU
