"""Precision settings: ``"auto"`` is bf16 exactly where the device multiplies bf16 natively."""

import sys

import pytest
import torch

from learned_manifold.precision import PRECISIONS, native_bf16, resolve_precision


def test_explicit_precisions_pass_through():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"


def test_auto_follows_native_bf16():
    assert resolve_precision("auto", "cpu") == ("bf16" if native_bf16("cpu") else "fp32")
    assert resolve_precision("auto", torch.device("meta")) == "fp32"  # no native bf16 on other devices


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU flags are read from Linux's /proc/cpuinfo")
def test_cpu_detection_matches_the_cpu_flags():
    with open("/proc/cpuinfo") as f:
        flags = {w for line in f if line.startswith("flags") for w in line.split()}
    assert flags, "no CPU flags found in /proc/cpuinfo"
    assert native_bf16("cpu") == bool(flags & {"avx512_bf16", "amx_tile"})


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        resolve_precision("fp8", "cpu")
    assert PRECISIONS == ("auto", "fp32", "bf16")
