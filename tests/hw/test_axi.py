"""AXI blocks: the address generator against its host model, the AXI4-Lite registers."""

import random

import pytest
from amaranth.sim import Simulator

from qsilicon.hw.blocks.axi import MAX_BURST, AddrGen, AxiLiteRegs, addr_pattern_layout, pattern_bursts
from qsilicon.hw.payload import pack


def simulate(dut, bench) -> None:
    """Run testbench ``bench`` on ``dut`` with one clock."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def run_addrgen(pat, ready_p=0.7, seed=0):
    dut = AddrGen(8)
    got = []
    rng = random.Random(seed)

    async def bench(ctx):
        ctx.set(dut.cfg.as_value(), pack(addr_pattern_layout(), pat))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(5000):
            ready = rng.random() < ready_p
            ctx.set(dut.o_burst.ready, ready)
            if ctx.get(dut.o_burst.valid) and ready:
                got.append((ctx.get(dut.o_burst.payload.addr), ctx.get(dut.o_burst.payload.beats)))
            if ctx.get(dut.done):
                return
            await ctx.tick()
        raise TimeoutError

    simulate(dut, bench)
    return got


@pytest.mark.parametrize("seed", range(6))
def test_addrgen_matches_host_model(seed):
    rng = random.Random(seed)
    pat = {"base": rng.randrange(0, 4096) * 8, "run": rng.randrange(1, 40), "n0": rng.randrange(1, 4),
           "s0": rng.randrange(0, 64) * 8, "n1": rng.randrange(1, 4), "s1": rng.randrange(0, 512) * 8,
           "n2": rng.randrange(1, 3), "s2": rng.randrange(0, 8) * 8}
    want = pattern_bursts(pat)
    assert run_addrgen(pat, seed=seed) == want
    assert all(1 <= b <= MAX_BURST and (a // 8) % 16 + b <= 16 for a, b in want)  # never crosses 128 bytes
    assert sum(b for _, b in want) == pat["run"] * pat["n0"] * pat["n1"] * pat["n2"]


def test_addrgen_empty_pattern_is_done_at_once():
    assert run_addrgen({"base": 0, "run": 0, "n0": 1, "s0": 0, "n1": 1, "s1": 0, "n2": 1, "s2": 0}) == []


def test_axi_lite_registers_write_strobes_and_read():
    dut = AxiLiteRegs(4)
    seen = {}

    async def bench(ctx):
        b = dut.bus
        ctx.set(dut.reg_i.as_value(), sum((0x1000 + i) << (32 * i) for i in range(4)))

        async def write(addr, data, strb=0xF):
            ctx.set(b.awaddr, addr)
            ctx.set(b.wdata, data)
            ctx.set(b.wstrb, strb)
            ctx.set(b.awvalid, 1)
            ctx.set(b.wvalid, 1)
            ctx.set(b.bready, 1)
            while not ctx.get(b.awready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(b.awvalid, 0)
            ctx.set(b.wvalid, 0)
            while not ctx.get(b.bvalid):
                await ctx.tick()
            assert ctx.get(b.bresp) == 0
            await ctx.tick()

        async def read(addr):
            ctx.set(b.araddr, addr)
            ctx.set(b.arvalid, 1)
            ctx.set(b.rready, 1)
            while not ctx.get(b.arready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(b.arvalid, 0)
            while not ctx.get(b.rvalid):
                await ctx.tick()
            v = ctx.get(b.rdata)
            await ctx.tick()
            return v

        await write(0x8, 0xDEADBEEF)
        await write(0x8, 0x000000AA, strb=0x1)
        seen["reg2"] = ctx.get(dut.reg_o[2])
        seen["read3"] = await read(0xC)

    simulate(dut, bench)
    assert seen == {"reg2": 0xDEADBEAA, "read3": 0x1003}


def _word_stream(seed: int, n: int, wb: int = 8):
    """Runs of consecutive words and scattered ones, ``last`` now and then (op boundaries)."""
    rng = random.Random(seed)
    words, addr = [], rng.randrange(0, 64) * wb
    while len(words) < n:
        run = rng.choice([1, 1, 2, 5, 16, 17, 40])
        for _ in range(run):
            words.append([addr, rng.getrandbits(8 * wb), False])
            addr += wb
        addr = rng.randrange(0, 4096) * wb
        if rng.random() < 0.3:
            words[-1][2] = True
    words = words[:n]
    words[-1][2] = True
    return words


@pytest.mark.parametrize("seed", range(4))
def test_word_writer_coalesces_and_writes_every_word(seed):
    from qsilicon.hw.blocks.axi import AxiWordWriter, coalesce_words

    wb = 8
    words = _word_stream(seed, 150, wb)
    dut = AxiWordWriter(data_width=8 * wb)
    rng = random.Random(seed + 100)
    mem, aws, errors = {}, [], []
    state = {"cycles": 0}

    async def bench(ctx):
        axi, w = dut.axi, dut.i_word
        i, queue, pending_b, cur = 0, [], 0, None
        for cycle in range(20000):
            # driver
            if i < len(words):
                ctx.set(w.valid, rng.random() < 0.8)
                ctx.set(w.payload.addr, words[i][0])
                ctx.set(w.payload.data, words[i][1])
                ctx.set(w.payload.last, words[i][2])
            else:
                ctx.set(w.valid, 0)
            # slave
            ctx.set(axi.awready, rng.random() < 0.7)
            ctx.set(axi.wready, rng.random() < 0.7)
            ctx.set(axi.bvalid, pending_b > 0)
            ctx.set(axi.bresp, 0)
            if ctx.get(w.valid) and ctx.get(w.ready):
                i += 1
            if ctx.get(axi.awvalid) and ctx.get(axi.awready):
                aws.append((ctx.get(axi.awaddr), ctx.get(axi.awlen) + 1))
                queue.append([ctx.get(axi.awaddr), ctx.get(axi.awlen) + 1])
            if ctx.get(axi.wvalid) and ctx.get(axi.wready):
                if cur is None:
                    if not queue:
                        errors.append("W beat before its address")  # allowed by AXI, but not done here
                        cur = [0, 1]
                    else:
                        cur = queue.pop(0)
                mem[cur[0]] = ctx.get(axi.wdata)
                cur[0] += wb
                cur[1] -= 1
                if (cur[1] == 0) != bool(ctx.get(axi.wlast)):
                    errors.append("wlast does not mark the burst's last beat")
                if cur[1] == 0:
                    cur = None
                    pending_b += 1
            if ctx.get(axi.bvalid) and ctx.get(axi.bready):
                pending_b -= 1
            if i == len(words) and ctx.get(dut.idle) and not queue and cur is None and pending_b == 0:
                state["cycles"] = cycle
                return
            await ctx.tick()
        raise TimeoutError

    simulate(dut, bench)
    assert not errors, errors[0]
    final = {}
    for addr, data, _ in words:
        final[addr] = data
    assert mem == final
    assert aws == coalesce_words([(a, last) for a, _, last in words], wb)
    assert all(1 <= b <= MAX_BURST and (a // wb) % MAX_BURST + b <= MAX_BURST for a, b in aws)


def test_word_writer_single_words_at_one_per_cycle():
    """Scattered single-word bursts still go at one beat per cycle when the slave is always ready."""
    from qsilicon.hw.blocks.axi import AxiWordWriter

    dut = AxiWordWriter(data_width=64)
    n = 64
    done = {}

    async def bench(ctx):
        axi, w = dut.axi, dut.i_word
        i, beats, first = 0, 0, None
        ctx.set(axi.awready, 1)
        ctx.set(axi.wready, 1)
        for cycle in range(1000):
            ctx.set(w.valid, i < n)
            ctx.set(w.payload.addr, (i * 37 % 200) * 64)  # never consecutive
            ctx.set(w.payload.last, i == n - 1)
            ctx.set(axi.bvalid, 1)
            if ctx.get(w.valid) and ctx.get(w.ready):
                i += 1
            if ctx.get(axi.wvalid) and ctx.get(axi.wready):
                first = cycle if first is None else first
                beats += 1
                if beats == n:
                    done["span"] = cycle - first + 1
                    return
            await ctx.tick()

    simulate(dut, bench)
    assert done["span"] <= n + 2


def run_burst_words(bursts, valid_p=1.0, ready_p=1.0, seed=0):
    """Feed ``bursts`` ((address, beats)) and one data word per beat to :class:`BurstWords`; the
    addressed words it emits (address, data, last) and the cycles from the first to the last."""
    from qsilicon.hw.blocks.axi import BurstWords, burst_layout

    dut = BurstWords(8)
    n = sum(b for _, b in bursts)
    rng = random.Random(seed)
    out, span = [], {}

    async def bench(ctx):
        bi, di, first = 0, 0, None
        for cycle in range(20 * n + 100):
            ctx.set(dut.gen_done, bi == len(bursts))
            ctx.set(dut.i_burst.valid, bi < len(bursts))
            if bi < len(bursts):
                ctx.set(dut.i_burst.payload.as_value(), pack(burst_layout(), {"addr": bursts[bi][0],
                                                                             "beats": bursts[bi][1]}))
            dv = di < n and rng.random() < valid_p
            ctx.set(dut.i_data.valid, dv)
            ctx.set(dut.i_data.payload, 1000 + di)
            ready = rng.random() < ready_p
            ctx.set(dut.o_word.ready, ready)
            await ctx.delay(1e-9)  # settle the combinational handshakes before sampling them
            if ctx.get(dut.i_burst.valid) and ctx.get(dut.i_burst.ready):
                bi += 1
            if ctx.get(dut.o_word.valid) and ready:
                p = dut.o_word.payload
                out.append((ctx.get(p.addr), ctx.get(p.data), ctx.get(p.last)))
                first = cycle if first is None else first
                span["cycles"] = cycle - first + 1
            if dv and ctx.get(dut.i_data.ready):
                di += 1
            if len(out) == n:
                return
            await ctx.tick()
        raise TimeoutError

    simulate(dut, bench)
    return out, span["cycles"]


@pytest.mark.parametrize("seed", range(4))
def test_burst_words_addresses_every_word(seed):
    """Each data word gets the next address of its burst, in order, with stalls on both sides;
    ``last`` marks only the final word of the final burst."""
    rng = random.Random(seed)
    bursts = [(rng.randrange(0, 4096) * 8, rng.choice([1, 1, 2, 5, 16])) for _ in range(12)]
    out, _ = run_burst_words(bursts, valid_p=0.7, ready_p=0.6, seed=seed)
    want = [a + 8 * j for a, b in bursts for j in range(b)]
    assert [a for a, _, _ in out] == want
    assert [d for _, d, _ in out] == [1000 + i for i in range(len(want))]
    assert [last for _, _, last in out] == [0] * (len(want) - 1) + [1]


def test_burst_words_single_word_bursts_one_a_cycle():
    """Scattered one-word bursts (the transposer's token rows) go out a word a cycle: the next
    burst is taken as the current one's last word leaves."""
    bursts = [((i * 37 % 200) * 64, 1) for i in range(40)]
    out, cycles = run_burst_words(bursts)
    assert [a for a, _, _ in out] == [a for a, _ in bursts]
    assert cycles == len(bursts)
