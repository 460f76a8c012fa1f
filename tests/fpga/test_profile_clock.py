"""The profile's clock rules (cnnx.profile.resolve_clock): taken from the cached place-and-route result of
the same array; refused without one; --clock-mhz refused above the reported Fmax unless forced."""

from __future__ import annotations

import pytest

from cnnx import profile
from cnnx.fpga import synth


@pytest.fixture
def synthesised(fake_flow):
    """conv 8x8 at 120 MHz and pool at 90 MHz in the (private) cache."""
    fake_flow.fmax = 120.0
    synth("conv", 8, 8)
    fake_flow.fmax = 90.0
    synth("pool", 8, 8)
    return fake_flow


def test_no_result_gives_cycles_only_and_says_what_to_run(fake_flow):
    c = profile.resolve_clock((8, 8))
    assert c["clock_mhz"] is None and c["clock_source"] == "none" and c["fmax_mhz"] is None
    assert "run `cnnx synth --core all --array 8x8 --device 85k" in c["clock_note"]
    assert "cycles only" in profile.format_hardware(c)
    assert fake_flow.runs == []  # it does not start a synthesis behind the user's back


def test_the_clock_is_the_slower_cores_fmax(synthesised):
    c = profile.resolve_clock((8, 8))
    assert c["clock_mhz"] == 90.0 and c["clock_source"] == "fmax" and c["fmax_mhz"] == 90.0
    assert set(c["hardware"]) == {"conv", "pool"}
    assert c["hardware"]["conv"]["fmax_mhz"] == 120.0 and c["hardware"]["conv"]["part"] == "LFE5U-85F"
    text = profile.format_hardware(c)
    assert "clock 90.0 MHz: the reported Fmax; LFE5U-85F CABGA381 speed 6" in text and "seed 1" in text
    assert "yosys 0.0-test" in text and "MULT18X18D 4" in text and "conv Fmax 120.0 MHz" in text


def test_the_synth_flag_runs_the_flow_when_missing(fake_flow):
    c = profile.resolve_clock((4, 4), run_synth=True)
    assert fake_flow.runs.count("nextpnr-ecp5") == 2 and c["clock_mhz"] == 120.0


def test_a_given_clock_up_to_fmax_is_used(synthesised):
    c = profile.resolve_clock((8, 8), 75.0)
    assert c["clock_mhz"] == 75.0 and c["clock_source"] == "given"


def test_a_clock_above_fmax_needs_force(synthesised):
    with pytest.raises(profile.ClockRefused, match=r"above the reported Fmax 90.0 MHz.*--force"):
        profile.resolve_clock((8, 8), 200.0)
    c = profile.resolve_clock((8, 8), 200.0, force=True)
    assert c["clock_mhz"] == 200.0 and c["clock_source"] == "given, above Fmax (forced)"
    assert "ABOVE the reported Fmax (forced)" in profile.format_hardware(c)


def test_a_given_clock_without_any_result_is_labelled_assumed(fake_flow):
    c = profile.resolve_clock((8, 8), 200.0)
    assert c["clock_source"] == "assumed" and c["hardware"] == {}
    assert "assumed" in profile.format_hardware(c)
    with pytest.raises(ValueError, match="positive"):
        profile.resolve_clock((8, 8), 0.0)


def test_a_core_that_did_not_place_gives_no_clock(fake_flow):
    synth("conv", 8, 8)
    fake_flow.pnr_error = "no BELs remaining of type 'MULT18X18D'"
    synth("pool", 8, 8)
    with pytest.raises(profile.ClockRefused, match="did not place and route"):
        profile.resolve_clock((8, 8))
    with pytest.raises(profile.ClockRefused, match="--force"):
        profile.resolve_clock((8, 8), 50.0)
    assert profile.resolve_clock((8, 8), 50.0, force=True)["clock_mhz"] == 50.0


def test_cli_profile_refuses_a_missing_run_before_any_synthesis(fake_flow, tmp_path, capsys):
    from cnnx import cli

    assert cli.main(["profile", str(tmp_path / "missing-run"), "--synth"]) == 2
    assert "no checkpoint" in capsys.readouterr().err and fake_flow.runs == []


def test_the_synth_flag_without_tools_says_how_to_install_them(fake_flow, monkeypatch):
    from cnnx.fpga import flow

    monkeypatch.setattr(flow, "tools_available", lambda: False)
    with pytest.raises(profile.ClockRefused, match=r"pip install 'cnnx\[fpga\]'"):
        profile.resolve_clock((8, 8), run_synth=True)
