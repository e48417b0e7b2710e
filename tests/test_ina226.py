"""INA226 driver against the register-level simulator (the driver path is the real one).

Expected values are computed by hand from the datasheet formulas in the comments, not read
back from the code under test.
"""

from __future__ import annotations

import errno

import pytest
from support.waiting import FakeClock

from hardware.ina226 import (
    INA226,
    INA226ConfigError,
    INA226Error,
    INA226NotFound,
    INA226TransientError,
    Mode,
    Reg,
    compute_calibration,
    decode_config,
    encode_config,
    timing_for_rate,
)
from hardware.sim import FakeSMBus, SimulatedINA226, SimulatedLoad

#: One conversion per read, at the chip's fastest (140 us) and at its default (1.1 ms) time:
#: the settings where a register is exactly one sample of the load.
SINGLE_FAST = {"averaging": 1, "bus_conv_us": 140, "shunt_conv_us": 140}
SINGLE_1MS = {"averaging": 1, "bus_conv_us": 1100, "shunt_conv_us": 1100}


def rig(
    *,
    watts: float = 120.0,
    supply_v: float = 12.0,
    shunt_ohms: float = 0.002,
    max_current_a: float | None = 32.768,
    clock: FakeClock | None = None,
    address: int = 0x40,
    **driver_kw,
):
    """A noiseless, droop-free load so register values can be computed by hand."""
    clock = clock or FakeClock(100.0)
    load = SimulatedLoad(
        idle_w=watts, busy_w=watts, noise_w=0.0, supply_v=supply_v, source_ohms=0.0, clock=clock
    )
    chip = SimulatedINA226(load, shunt_ohms=shunt_ohms)
    bus = FakeSMBus(bus_number=1)
    bus.attach(address, chip)
    drv = INA226(
        bus,
        address=address,
        shunt_ohms=shunt_ohms,
        max_current_a=max_current_a,
        clock=clock,
        **driver_kw,
    )
    return clock, load, chip, bus, drv


# ----------------------------------------------------------------- calibration math


def test_calibration_datasheet_example_1ma_lsb() -> None:
    # R = 2 mΩ, Imax = 32.768 A → Current_LSB = 32.768/2^15 = 1 mA
    # CAL = 0.00512 / (1e-3 * 0.002) = 2560; Power_LSB = 25 mW
    c = compute_calibration(0.002, 32.768)
    assert c.cal == 2560
    assert c.current_lsb_a == pytest.approx(1e-3, rel=1e-12)
    assert c.power_lsb_w == pytest.approx(25e-3, rel=1e-12)


def test_calibration_truncates_and_uses_effective_lsb() -> None:
    # R = 0.01, Imax = 3.2 → LSB 97.65625 µA, CAL = 0.00512/(97.65625e-6*0.01) = 5242.88 → 5242
    c = compute_calibration(0.01, 3.2)
    assert c.cal == 5242
    assert c.current_lsb_a == pytest.approx(0.00512 / (5242 * 0.01), rel=1e-12)


def test_calibration_default_is_full_shunt_range() -> None:
    # 81.92 mV / 0.1 Ω = 0.8192 A → LSB 25 µA → CAL = 0.00512/(25e-6*0.1) = 2048
    c = compute_calibration(0.1)
    assert c.cal == 2048
    assert c.max_current_a == pytest.approx(0.8192)


def test_calibration_rejects_current_beyond_shunt_range() -> None:
    # 3.2 A through 0.1 Ω is 320 mV: four times the ADC's ±81.92 mV
    with pytest.raises(INA226ConfigError, match=r"320\.00 mV.*81\.92 mV"):
        compute_calibration(0.1, 3.2)


def test_calibration_rejects_cal_that_does_not_fit_15_bits() -> None:
    # 1 A through 1 mΩ = 1 mV → CAL = 167.77/(1*0.001) ≈ 167772 > 32767
    with pytest.raises(INA226ConfigError, match="15-bit"):
        compute_calibration(0.001, 1.0)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf")])
def test_calibration_rejects_bad_shunt(bad: float) -> None:
    with pytest.raises(INA226ConfigError, match="shunt_ohms"):
        compute_calibration(bad, 1.0)


# ----------------------------------------------------------------- config encodings


def test_default_config_encoding_is_power_on_value() -> None:
    assert encode_config() == 0x4127  # datasheet reset value


@pytest.mark.parametrize(
    ("avg", "code"), [(1, 0), (4, 1), (16, 2), (64, 3), (128, 4), (256, 5), (512, 6), (1024, 7)]
)
def test_averaging_encoding(avg: int, code: int) -> None:
    v = encode_config(averaging=avg)
    assert (v >> 9) & 0b111 == code
    assert decode_config(v).averaging == avg


@pytest.mark.parametrize(
    ("us", "code"),
    [(140, 0), (204, 1), (332, 2), (588, 3), (1100, 4), (2116, 5), (4156, 6), (8244, 7)],
)
def test_conversion_time_encoding(us: int, code: int) -> None:
    v = encode_config(bus_conv_us=us, shunt_conv_us=140)
    assert (v >> 6) & 0b111 == code and (v >> 3) & 0b111 == 0
    v = encode_config(bus_conv_us=140, shunt_conv_us=us)
    assert (v >> 3) & 0b111 == code and (v >> 6) & 0b111 == 0


def test_full_config_words() -> None:
    # 0x4000 | AVG 1024 (7<<9) | VBUSCT 8.244 ms (7<<6) | VSHCT 140 µs (0) | triggered (3)
    assert encode_config(1024, 8244, 140, "triggered") == 0x4FC3
    # 0x4000 | AVG 16 (2<<9) | VBUSCT 332 µs (2<<6) | VSHCT 588 µs (3<<3) | shunt continuous 5
    assert encode_config(16, 332, 588, "shunt_continuous") == 0x449D
    assert decode_config(0x449D).mode is Mode.SHUNT_CONTINUOUS


@pytest.mark.parametrize(
    ("kw", "what"),
    [
        ({"averaging": 3}, "averaging"),
        ({"bus_conv_us": 1000}, "bus_conv_us"),
        ({"mode": "sometimes"}, "mode"),
    ],
)
def test_bad_config_values_are_named(kw: dict, what: str) -> None:
    with pytest.raises(INA226ConfigError, match=what):
        encode_config(**kw)


def test_timing_for_rate_fits_the_period() -> None:
    t = timing_for_rate(100.0)  # 10 ms period: 4 × (1.1 + 1.1) ms = 8.8 ms is the best fit
    assert (t.averaging, t.bus_conv_us) == (4, 1100)
    assert t.cycle_s <= 0.01
    fastest = timing_for_rate(1 / 280e-6)
    assert (fastest.averaging, fastest.bus_conv_us, fastest.shunt_conv_us) == (1, 140, 140)
    with pytest.raises(INA226ConfigError, match="faster than the INA226"):
        timing_for_rate(5000.0)


# ----------------------------------------------------------------- reading values


def test_read_datasheet_example_10a_12v() -> None:
    # 10 A through 2 mΩ = 20 mV → shunt register 20e-3/2.5e-6 = 8000
    # current = 8000 * 2560 / 2048 = 10000 → 10.000 A at 1 mA/LSB
    # bus 12 V / 1.25 mV = 9600; power = 10000 * 9600 / 20000 = 4800 → 4800 * 25 mW = 120 W
    clock, _, chip, bus, drv = rig(**SINGLE_1MS)
    clock.advance(0.0025)
    s = drv.read()
    assert (chip.shunt, chip.bus, chip.current, chip.power) == (8000, 9600, 10000, 4800)
    assert s.shunt_voltage_v == pytest.approx(0.020)
    assert s.bus_voltage_v == pytest.approx(12.0)
    assert s.current_a == pytest.approx(10.0)
    assert s.power_w == pytest.approx(120.0)
    assert s.fresh and not s.overflow
    # on the wire the INA226 sends MSB first: SMBus word = byte-swapped register
    assert bus.read_word_data(0x40, Reg.SHUNT_VOLTAGE) == 0x401F  # 8000 = 0x1F40
    assert bus.read_i2c_block_data(0x40, Reg.SHUNT_VOLTAGE, 2) == [0x1F, 0x40]


def test_negative_current_is_signed() -> None:
    # -10 A: shunt register -8000 = 0xE0C0 (two's complement); current -10000
    clock, load, chip, bus, drv = rig(**SINGLE_FAST)
    load.set_power(-120.0, t=clock())
    clock.advance(0.001)
    s = drv.read()
    assert chip.shunt == -8000
    assert bus.read_word_data(0x40, Reg.SHUNT_VOLTAGE) == 0xC0E0
    assert s.shunt_voltage_v == pytest.approx(-0.020)
    assert s.current_a == pytest.approx(-10.0)
    assert s.power_w == pytest.approx(-120.0)  # chip's power register is unsigned: 4800
    assert chip.power == 4800


def test_adc_quantization_rounds_to_lsb() -> None:
    # 1.23456 A through 0.01 Ω = 12.3456 mV → round(4938.24) = 4938 → 12.345 mV
    # bus 5 V exactly → 4000 codes; shunt-only noise free
    clock, _load, chip, _, drv = rig(
        watts=5.0 * 1.23456,
        supply_v=5.0,
        shunt_ohms=0.01,
        max_current_a=3.2,
        **SINGLE_FAST,
    )
    clock.advance(0.001)
    s = drv.read()
    assert chip.shunt == 4938
    assert s.shunt_voltage_v == pytest.approx(4938 * 2.5e-6)
    # current register = trunc(4938 * 5242 / 2048) = 12639 → × 0.00512/(5242*0.01)
    assert chip.current == 12639
    assert s.current_a == pytest.approx(12639 * 0.00512 / (5242 * 0.01))


def test_overflow_flag_when_current_exceeds_calibration() -> None:
    # Imax 0.2 A on 0.1 Ω → CAL = trunc(0.00512/(0.2/32768*0.1)) = 8388. A real 0.5 A
    # gives shunt 50 mV = 20000 codes → current = 20000*8388/2048 = 81914 > 32767: overflow
    clock, load, chip, _, drv = rig(
        watts=2.5,
        supply_v=5.0,
        shunt_ohms=0.1,
        max_current_a=0.2,
        **SINGLE_FAST,
    )
    assert drv.calibration.cal == 8388
    clock.advance(0.001)
    s = drv.read()
    assert chip.shunt == 20000
    assert s.overflow
    load.set_power(0.5, t=clock())  # 0.1 A → 4000 codes → 16382: fits again
    clock.advance(0.001)
    assert not drv.read().overflow


def test_averaging_means_the_conversion_windows() -> None:
    # AVG 4, CT 1.1 ms each: shunt windows start at 0, 2.2, 4.4, 6.6 ms. The load steps from
    # 1 A to 2 A at 4.4 ms, so windows 0,1 see 10 mV (4000) and 2,3 see 20 mV (8000):
    # register = (4000+4000+8000+8000)/4 = 6000; registers appear only at 8.8 ms.
    clock = FakeClock(100.0)
    _, load, chip, _, drv = rig(
        watts=5.0,
        supply_v=5.0,
        shunt_ohms=0.01,
        max_current_a=3.2,
        clock=clock,
        averaging=4,
        bus_conv_us=1100,
        shunt_conv_us=1100,
    )
    t0 = clock()  # config was written at t0 (the fake clock has not moved)
    load.set_power(10.0, t=t0 + 0.0044)
    clock.advance(0.0087)
    assert chip.read_register(Reg.SHUNT_VOLTAGE) == 0  # nothing converted yet
    assert not drv.flags() & (1 << 3)
    clock.advance(0.0002)  # 8.9 ms: first cycle complete
    s = drv.read()
    assert s.fresh
    assert chip.shunt == 6000
    assert s.shunt_voltage_v == pytest.approx(0.015)


def test_conversion_ready_flag_set_per_cycle_and_cleared_by_read() -> None:
    clock, _, _chip, _, drv = rig(**SINGLE_1MS)
    cvrf = 1 << 3
    clock.advance(0.0021)
    assert not drv.flags() & cvrf  # 2.1 ms < 2.2 ms cycle
    clock.advance(0.0002)
    assert drv.flags() & cvrf  # cycle done at 2.2 ms
    assert not drv.flags() & cvrf  # reading mask/enable cleared it
    clock.advance(0.0022)
    assert drv.flags() & cvrf
    # a sample read between conversions is reported stale
    drv.read()
    assert not drv.read().fresh
    # writing config clears CVRF and restarts the cycle
    clock.advance(0.0022)
    drv.configure(averaging=1)
    assert not drv.flags() & cvrf


def test_triggered_mode_converts_once_per_read() -> None:
    clock, _load, chip, _, drv = rig(mode="triggered", **SINGLE_FAST)

    # the driver triggers, then polls CVRF; advance the fake clock on every poll
    orig = chip.read_register

    def ticking(reg: int) -> int:
        clock.advance(100e-6)
        return orig(reg)

    chip.read_register = ticking  # type: ignore[method-assign]
    s1 = drv.read()
    assert s1.current_a == pytest.approx(10.0)
    before = chip.conversions
    clock.advance(0.01)
    chip.read_register(Reg.SHUNT_VOLTAGE)
    assert chip.conversions == before  # no conversion without a new trigger
    drv.read()
    assert chip.conversions == before + 1


def test_alert_power_over_limit_latched() -> None:
    # power register 4800 (120 W); limit 4000 → alert; latched AFF clears on mask/enable read
    clock, load, chip, _, drv = rig(**SINGLE_FAST)
    drv.set_alert("power_over", limit=4000, latch=True)
    clock.advance(0.0003)
    assert chip.alert_asserted
    assert not chip.alert_pin_high  # active low by default
    assert drv.flags() & (1 << 4)
    load.set_power(60.0, t=clock())  # power register 2400 < 4000
    clock.advance(0.0003)
    assert not drv.flags() & (1 << 4)
    with pytest.raises(INA226ConfigError, match="alert"):
        drv.set_alert("sometimes")


def test_reset_bit_restores_defaults() -> None:
    _clock, _, _chip, _, drv = rig(averaging=16, bus_conv_us=140, shunt_conv_us=140)
    drv.write_register(Reg.CONFIG, 0x8000)
    assert drv.read_register(Reg.CONFIG) == 0x4127
    assert drv.read_register(Reg.CALIBRATION) == 0


# ----------------------------------------------------------------- errors


def test_absent_chip_is_a_clear_not_found_naming_bus_and_address() -> None:
    bus = FakeSMBus(bus_number=3)
    with pytest.raises(INA226NotFound, match=r"I2C bus 3 address 0x41.*no device answers"):
        INA226(bus, address=0x41, shunt_ohms=0.1)


def test_wrong_chip_ids_are_rejected() -> None:
    load = SimulatedLoad(noise_w=0)
    bus = FakeSMBus(bus_number=1)
    bus.attach(0x40, SimulatedINA226(load, manufacturer_id=0x1234, die_id=0x5678))
    with pytest.raises(INA226NotFound, match=r"I2C bus 1 address 0x40.*not an INA226.*0x1234"):
        INA226(bus, address=0x40)


def test_missing_dev_i2c_is_not_found() -> None:
    with pytest.raises(INA226NotFound, match=r"/dev/i2c-97 does not exist"):
        INA226(97, address=0x40)


def test_transient_errors_are_retried() -> None:
    clock, _, _, bus, drv = rig(**SINGLE_FAST, retries=3, retry_delay_s=0)
    clock.advance(0.001)
    bus.fail_next(2, errno.EREMOTEIO)
    s = drv.read()
    assert s.current_a == pytest.approx(10.0)
    assert drv.transient_errors == 2


def test_persistent_transient_errors_raise_after_bounded_retries() -> None:
    clock, _, _, bus, drv = rig(retries=2, retry_delay_s=0)
    bus.fail_next(3, errno.EREMOTEIO)  # 1 try + 2 retries, all fail
    with pytest.raises(INA226TransientError, match=r"I2C bus 1 address 0x40.*3 times"):
        drv.read()
    assert bus.injected_errors == 3
    clock.advance(0.005)
    assert drv.read().current_a == pytest.approx(10.0)  # the driver recovers


def test_non_transient_error_is_not_retried() -> None:
    _, _, _, bus, drv = rig(retries=5, retry_delay_s=0)
    bus.fail_next(1, errno.EINVAL)
    with pytest.raises(INA226Error, match="Invalid argument"):
        drv.read()
    assert drv.transient_errors == 0


def test_bad_address_and_params() -> None:
    with pytest.raises(INA226ConfigError, match="address"):
        INA226(FakeSMBus(), address=0x90)
    _, _, _, bus, _ = rig()
    with pytest.raises(INA226ConfigError, match=r"address 0x40.*81\.92"):
        INA226(bus, shunt_ohms=0.1, max_current_a=3.2)


def test_poll_returns_only_new_conversions_with_a_bounded_age() -> None:
    clock, _, _, bus, drv = rig(**SINGLE_1MS)
    assert drv.poll() is None  # nothing converted yet (cycle 2.2 ms)
    n = bus.transactions
    clock.advance(0.0015)
    assert drv.poll() is None
    assert bus.transactions == n + 1  # a miss costs one transaction (mask/enable)
    clock.advance(0.001)  # 2.5 ms: the conversion completed at 2.2 ms
    s = drv.poll()
    assert s is not None and s.fresh and s.current_a == pytest.approx(10.0)
    # completed within the last 1.0 ms (since the chip was seen without data): the estimate
    # is the middle of that interval plus half the ADC cycle
    assert s.age_s == pytest.approx(0.0011 + 0.0005)
    assert drv.poll() is None  # the same conversion is never returned twice
