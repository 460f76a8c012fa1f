"""VCD traces: both drivers write the same header and time base, tied to the clock (1 ps units, one period =
1e6 / MHz ps, rise at P/2, fall at P)."""

import re

import numpy as np
import pytest

pytestmark = pytest.mark.rtl

sim = pytest.importorskip("cnnx.sim")
from cnnx.sim import drivers  # noqa: E402


def _stamps(path, n=8):
    out = []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                out.append(int(line[1:]))
                if len(out) == n:
                    break
    return out


def _body(path):
    text = open(path).read()
    return re.sub(r"\$date.*?\$end", "", text, flags=re.S)


@pytest.mark.parametrize("mhz, period", [(None, 10_000), (125.0, 8_000), (87.3, 11_455)])
def test_trace_period(mhz, period):
    assert drivers.trace_period_ps(mhz) == period


@pytest.mark.parametrize("bad", [0, -5.0, True, "100", 1e9])
def test_trace_period_refuses(bad):
    with pytest.raises(ValueError, match="trace_clock_mhz"):
        drivers.trace_period_ps(bad)


def test_both_drivers_write_one_time_base(tmp_path, rng):
    x = rng.integers(-128, 128, (1, 3, 4, 4), dtype=np.int8)
    paths = {}
    for d in ("fast", "python"):
        paths[d] = tmp_path / f"{d}.vcd"
        core = sim.PoolCore(driver=d, trace=str(paths[d]), trace_clock_mhz=125)
        assert core.trace_period_ps == 8000
        core.run(x, 2)
        core.close()
    for d, p in paths.items():
        head = open(p).read(4000)
        assert "$timescale 1ps $end" in head, d
        stamps = _stamps(p)
        assert stamps[:4] == [4000, 8000, 12000, 16000], d
        assert all(b - a == 4000 for a, b in zip(stamps, stamps[1:], strict=False)), d
    assert _body(paths["fast"]) == _body(paths["python"])  # the same waveform, edge for edge


def test_python_driver_stops_at_its_time_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(drivers._PythonBackend, "VCD_TIME_MAX", 50_000)
    core = sim.PoolCore(driver="python", trace=str(tmp_path / "p.vcd"), trace_clock_mhz=100)
    with pytest.warns(UserWarning, match="stopped at 50000 ps"):
        core._be.tick(10)
    core._be.tick(2)  # no further dumps, no error
    core.close()
    assert max(_stamps(tmp_path / "p.vcd", 100)) <= 50_000


def _signals(path, names):
    """[(time, {name: value})] after every time stamp, for top-level signals `names` (a small VCD reader)."""
    text = open(path).read()
    header, body = text.split("$enddefinitions", 1)
    top = header.split("$scope module cnnx_")[0]  # the TOP scope's own ports
    ids = {m.group(1): m.group(2) for m in re.finditer(r"\$var wire\s+\d+ (\S+) (\w+)", top)
           if m.group(2) in names}
    rows, state, t = [], {}, None
    for line in body.splitlines():
        if line.startswith("#"):
            if t is not None:
                rows.append((t, dict(state)))
            t = int(line[1:])
        elif line[:1] in ("0", "1") and line[1:] in ids:
            state[ids[line[1:]]] = int(line[0])
        elif line.startswith("b") and line.split()[1] in ids:
            v, i = line.split()
            state[ids[i]] = int(v[1:], 2)
    rows.append((t, dict(state)))
    return rows


def test_a_run_in_the_vcd_matches_the_documented_timing(tmp_path, rng):
    """docs/rtl.md: busy is high for cycle_count rising edges, from the edge that samples start; done rises
    as busy falls."""
    core = sim.PoolCore(driver="fast", trace=str(tmp_path / "r.vcd"), trace_clock_mhz=100)
    _, cycles = core.run(rng.integers(-128, 128, (1, 4, 4, 4), dtype=np.int8), 2)
    core.close()
    rises = [st for t, st in _signals(tmp_path / "r.vcd", {"clk", "start", "busy", "done", "cycle_count"})
             if st.get("clk") == 1]
    k = next(i for i, st in enumerate(rises) if st["start"] == 1)
    n = int(np.ravel(cycles)[0])
    assert [st["busy"] for st in rises[k : k + n + 1]] == [1] * n + [0]
    assert [st["done"] for st in rises[k : k + n + 1]] == [0] * n + [1]
    assert [st["cycle_count"] for st in rises[k : k + n + 1]] == list(range(n)) + [n]
