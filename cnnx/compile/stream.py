"""The packet stream that runs a layer on a streamed core (verilog/cnnx_conv_stream.v, cnnx_pool_stream.v):
the one definition of its format, used by the drivers (sim/drivers.py), the cycle model (cnnx/cycles.py)
and the tests. verilog/cnnx_axis_in.v decodes it and documents the same format.

A stream is a sequence of 32-bit words packed little-endian into W-bit beats (W = 32 or 64; word 2i in the low
half of a 64-bit beat); the last beat carries tlast and is padded with NOP words. A packet is a header word

    bits 31:28 opcode, 27:14 ADDR, 13:0 N-1          (N = 1 ... MAX_N words)

and its payload: NOP (padding; no payload), CFG (N words to registers ADDR ...; ADDR + N <= 16), WR0 / WR1 /
WR2 (N words to buffer 0 input map / 1 weights / 2 bias at word ADDR ...; ADDR + N <= the buffer's limit),
START (no payload: start the core and wait for it), READ (no payload: N output words from word ADDR go out on
the output stream; ADDR + N <= the output buffer). `check` refuses anything else before a simulator runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OP_NOP, OP_CFG, OP_WR0, OP_WR1, OP_WR2, OP_START, OP_READ = range(7)
OP_NAMES = ("NOP", "CFG", "WR0", "WR1", "WR2", "START", "READ")
PAYLOAD_OPS = (OP_CFG, OP_WR0, OP_WR1, OP_WR2)
MAX_N = 1 << 14  # words per packet (the N-1 field's 14 bits)
MAX_ADDR = (1 << 14) - 1
N_REGS = 16  # the cores' register port: 4 address bits
WIDTHS = (32, 64)


@dataclass(frozen=True)
class Limits:
    """Buffer sizes in 32-bit words, as the decoder checks them: buffers 0, 1, 2 (0: no such buffer) and the
    output buffer."""

    wr: tuple[int, int, int]
    read: int


def conv_limits(params: dict) -> Limits:
    """The conv core's limits from its build parameters (IFMAP_DEPTH ... in bytes, BIAS_DEPTH entries)."""
    return Limits((params["IFMAP_DEPTH"] // 4, params["WEIGHT_DEPTH"] // 4, params["BIAS_DEPTH"]),
                  params["OFMAP_DEPTH"] // 4)


def pool_limits(params: dict) -> Limits:
    """The pool core has one input buffer: WR1 and WR2 are refused."""
    return Limits((params["IFMAP_DEPTH"] // 4, 0, 0), params["OFMAP_DEPTH"] // 4)


def check_width(width) -> int:
    if isinstance(width, bool) or width not in WIDTHS:
        raise ValueError(f"stream width must be one of {WIDTHS} bits, got {width!r}")
    return int(width)


def header(op: int, addr: int = 0, n: int = 1) -> int:
    """One header word (no checks beyond the field widths: `check` judges the packet)."""
    if not 0 <= op < 16 or not 0 <= addr <= MAX_ADDR or not 1 <= n <= MAX_N:
        raise ValueError(f"header fields out of range: op {op}, addr {addr}, n {n}")
    return (op << 28) | (addr << 14) | (n - 1)


class StreamBuilder:
    """Collects packets into one stream of words. Long writes are split into packets of at most MAX_N."""

    def __init__(self):
        self._words: list[int] = []

    def _payload(self, op: int, addr0: int, words) -> None:
        words = np.asarray(words, np.uint32).ravel()
        for i in range(0, words.size, MAX_N):
            chunk = words[i : i + MAX_N]
            self._words.append(header(op, addr0 + i, chunk.size))
            self._words.extend(chunk.tolist())

    def cfg(self, addr0: int, values) -> None:
        self._payload(OP_CFG, addr0, [int(v) & 0xFFFFFFFF for v in values])

    def write(self, sel: int, words, addr0: int = 0) -> None:
        if sel not in (0, 1, 2):
            raise ValueError(f"buffer select must be 0, 1 or 2, got {sel!r}")
        if np.asarray(words).size:
            self._payload(OP_WR0 + sel, addr0, words)

    def start(self) -> None:
        self._words.append(header(OP_START))

    def read(self, addr0: int, n: int) -> None:
        for i in range(0, n, MAX_N):
            self._words.append(header(OP_READ, addr0 + i, min(MAX_N, n - i)))

    def take(self) -> np.ndarray:
        """The words collected so far (uint32); the builder starts empty again."""
        out = np.asarray(self._words, np.uint32)
        self._words = []
        return out


def parse(words) -> list[tuple[int, int, int]]:
    """The packets (op, addr, n) of a stream, n = 0 for packets without payload (NOP, START) and the word
    count for READ; ValueError for an unknown opcode or a payload the stream cuts short."""
    words = np.asarray(words, np.uint32).tolist()
    out, i = [], 0
    while i < len(words):
        h = words[i]
        op, addr, n = h >> 28, (h >> 14) & MAX_ADDR, (h & (MAX_N - 1)) + 1
        if op >= len(OP_NAMES):
            raise ValueError(f"stream word {i}: unknown opcode {op} (header 0x{h:08x})")
        if op in PAYLOAD_OPS:
            if i + 1 + n > len(words):
                left = len(words) - i - 1
                raise ValueError(f"stream word {i}: {OP_NAMES[op]} of {n} words, but only {left} follow")
            i += 1 + n
        else:
            i += 1
            n = n if op == OP_READ else 0
        out.append((op, addr, n))
    return out


def check(words, limits: Limits) -> list[tuple[int, int, int]]:
    """Everything the RTL decoder would refuse, refused here first (ValueError): unknown opcodes, packets cut
    short, and packets past their register file or buffer. Returns the packets (see `parse`)."""
    packets = parse(words)
    for k, (op, addr, n) in enumerate(packets):
        if op == OP_CFG:
            what, lim = "the register file", N_REGS
        elif op in (OP_WR0, OP_WR1, OP_WR2):
            what, lim = f"buffer {op - OP_WR0}", limits.wr[op - OP_WR0]
        elif op == OP_READ:
            what, lim = "the output buffer", limits.read
        else:
            continue
        if addr + n > lim:
            raise ValueError(f"packet {k} ({OP_NAMES[op]}): words {addr} ... {addr + n - 1} run past {what} "
                             f"({lim} words)")
    return packets


def pack(words, width: int) -> np.ndarray:
    """The W-bit beats of a stream (uint32 for W=32, uint64 for W=64), the last padded with NOP words; the
    last beat is the one with tlast."""
    width = check_width(width)
    words = np.asarray(words, np.uint32)
    per = width // 32
    pad = (-words.size) % per
    if pad:
        words = np.concatenate([words, np.full(pad, header(OP_NOP), np.uint32)])
    if per == 1:
        return words.copy()
    w = words.reshape(-1, 2).astype(np.uint64)
    return w[:, 0] | (w[:, 1] << np.uint64(32))


def unpack(beats, width: int, n: int) -> np.ndarray:
    """The first `n` words of one read-back's beats (the inverse of the encoder's packing)."""
    width = check_width(width)
    beats = np.asarray(beats, np.uint64 if width == 64 else np.uint32)
    if width == 32:
        return beats[:n].astype(np.uint32)
    lo = (beats & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (beats >> np.uint64(32)).astype(np.uint32)
    return np.stack([lo, hi], axis=1).ravel()[:n]


def read_runs(addrs) -> list[tuple[int, int]]:
    """Word addresses (in order) as (start, length) runs of consecutive addresses: one READ packet each."""
    runs: list[list[int]] = []
    for a in np.asarray(addrs, np.int64).tolist():
        if runs and runs[-1][0] + runs[-1][1] == a:
            runs[-1][1] += 1
        else:
            runs.append([a, 1])
    return [(a, n) for a, n in runs]


def _payload_packets(op: int, addr0: int, n: int) -> list[tuple[int, int, int]]:
    return [(op, addr0 + i, min(MAX_N, n - i)) for i in range(0, n, MAX_N)]


def _read_packets(addrs) -> list[tuple[int, int, int]]:
    out = []
    for a, n in read_runs(addrs):
        out += [(OP_READ, a + i, min(MAX_N, n - i)) for i in range(0, n, MAX_N)]
    return out


def conv_packets(C, H, W, F, KH, KW, stride, padding, rows, cols, params, weights=True):
    """The packets (op, addr, n) of one image's stream on cnnx_conv_stream, as sim/drivers.py's ConvCore
    lays it out: the 16 registers, each column bank's weights and bias (when `weights`: the first image of
    a batch; later images reuse them), the input map, START, one READ per run of output words."""
    from cnnx.shapes import out_size

    OH = out_size(H, KH, stride, padding, what="kernel")
    OW = out_size(W, KW, stride, padding, what="kernel")
    cp = 1 << (cols - 1).bit_length()
    K, FT, PT = C * KH * KW, -(-F // cols), -(-OH * OW // rows)
    pk = []
    if weights:
        pk += _payload_packets(OP_CFG, 0, N_REGS)
        for c in range(cols):
            pk += _payload_packets(OP_WR1, c * (params["WEIGHT_DEPTH"] // cp // 4), -(-FT * K // 4))
            pk += _payload_packets(OP_WR2, c * (params["BIAS_DEPTH"] // cp), FT)
    pk += _payload_packets(OP_WR0, 0, -(-C * H * W // 4))
    pk.append((OP_START, 0, 0))
    bank_words = -(-PT * FT * rows // 4)
    addrs = (np.arange(cols)[:, None] * (params["OFMAP_DEPTH"] // cp // 4) + np.arange(bank_words)).ravel()
    return pk + _read_packets(addrs)


def pool_packets(C, H, W, kernel, stride, lanes, params, weights=True):
    """The packets of one image's stream on cnnx_pool_stream (sim/drivers.py's PoolCore layout): the 12
    registers (with `weights`, i.e. the first image), the lane-banked input map, START, the output words."""
    from cnnx.shapes import out_size

    OH = out_size(H, kernel, stride, 0, what="pooling window")
    OW = out_size(W, kernel, stride, 0, what="pooling window")
    lp = 1 << (lanes - 1).bit_length()
    CG = -(-C // lanes)
    pk = _payload_packets(OP_CFG, 0, 12) if weights else []
    pk += _payload_packets(OP_WR0, 0, -(-CG * H * W // 4) * lp)
    pk.append((OP_START, 0, 0))
    return pk + _read_packets(np.arange(-(-CG * OH * OW // 4) * lp))
