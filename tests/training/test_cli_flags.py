"""`cli_flags.as_flags`: settings errors name the command-line flags and their syntax, not `TrainConfig`'s."""

import pytest

from learned_manifold_training.cli import main
from learned_manifold_training.cli_flags import as_flags


@pytest.mark.parametrize("message, flags", [
    ("jacobian_probes acts on the Jacobian target of centred runs only (centred=True, factor_target='jacobian')",
     "--jacobian-probes acts on the Jacobian target of centred runs only (without --uncentred, --factor-target "
     "jacobian)"),
    ("factor_hidden sizes a factor network of its own, not a shared trunk (shared_trunk=True trains one network, "
     "whose width is hidden: 256)",
     "--factor-hidden sizes a factor network of its own, not a shared trunk (--shared-trunk trains one network, "
     "whose width is --hidden 256)"),
    ("denoiser_hidden sizes the separate denoiser of a centred run (centred=True, shared_trunk=False)",
     "--denoiser-hidden sizes the separate denoiser of a centred run (without --uncentred, --no-shared-trunk)"),
    ("hidden sizes the MLP only, but backbone 'unet' trains the UNet (preset sizes it): leave it out, or choose "
     "backbone 'mlp'",
     "--hidden sizes the MLP only, but --backbone unet trains the UNet (--preset sizes it): leave it out, or choose "
     "--backbone mlp"),
    ("steps must lie in 1..2147483648, got 0", "--steps must lie in 1..2147483648, got 0"),
    ("centred=False has no denoiser", "--uncentred has no denoiser"),
    ("compile=False and precision='fp32'", "without --compile and --precision fp32"),
])
def test_field_names_and_python_values_are_written_as_flags(message, flags):
    """Tester F (s32): only the leading word and names with an underscore were rewritten, so "centred=True",
    "--shared-trunk=True" (no valid syntax), "hidden: 256" and "backbone 'unet'" reached the command line."""
    assert as_flags(message) == flags


def test_the_train_command_names_flags_in_a_settings_error(capsys):
    assert main(["train", "circle", "--out", "m.lmm", "--shared-trunk", "--factor-hidden", "64"]) == 2
    assert capsys.readouterr().err == (
        "learned-manifold train: error: --factor-hidden sizes a factor network of its own, not a shared trunk "
        "(--shared-trunk trains one network, whose width is --hidden 256)\n")
