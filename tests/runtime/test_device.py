"""Device/dtype policy with fake torch modules (no GPU needed)."""

from __future__ import annotations

from types import SimpleNamespace

from brushwork.runtime.device import choose


def _fake_torch(cuda: bool = False, name: str = "", mps: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        cuda=SimpleNamespace(is_available=lambda: cuda, get_device_name=lambda i=0: name,
                             is_bf16_supported=lambda: True),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps)),
    )


def test_cpu_is_float32():
    policy = choose(torch_module=_fake_torch())
    assert (policy.device, policy.dtype) == ("cpu", "float32")


def test_cuda_defaults_to_float16():
    policy = choose(torch_module=_fake_torch(cuda=True, name="NVIDIA GeForce RTX 4090"))
    assert (policy.device, policy.dtype) == ("cuda", "float16")


def test_gtx_16xx_gets_float32_to_avoid_black_images():
    policy = choose(torch_module=_fake_torch(cuda=True, name="NVIDIA GeForce GTX 1650 Ti"))
    assert (policy.device, policy.dtype) == ("cuda", "float32")
    assert "NaN" in policy.reason


def test_mps_and_explicit_settings():
    assert choose(torch_module=_fake_torch(mps=True)).device == "mps"
    explicit = choose("cuda", "bfloat16", torch_module=_fake_torch(cuda=True, name="H100"))
    assert (explicit.device, explicit.dtype) == ("cuda", "bfloat16")
    assert choose("cpu", torch_module=_fake_torch(cuda=True, name="H100")).dtype == "float32"


class _FakeThreads:
    def __init__(self, count: int) -> None:
        self.count = count
        self.calls: list[int] = []

    def get_num_threads(self) -> int:
        return self.count

    def set_num_threads(self, count: int) -> None:
        self.calls.append(count)
        self.count = count


def test_threads_setting_is_applied_and_zero_keeps_torchs_default():
    from brushwork.runtime.device import apply_threads

    fake = _FakeThreads(8)
    assert apply_threads(0, torch_module=fake) == 8 and fake.calls == []
    assert apply_threads(1, torch_module=fake) == 1 and fake.calls == [1]
    assert apply_threads(1, torch_module=fake) == 1 and fake.calls == [1]  # already so: no call
