"""The daemon's main loop: camera -> preprocess -> head -> codec -> link, plus its duties.

Why the main loop owns the watchdog: ``WATCHDOG=1`` must prove the *pipeline* moves, not
that some timer thread is alive. Pings are sent from this loop and only while a frame went
through the pipeline within ``stall_timeout_s`` — a hung head, a camera that stopped
delivering or a wedged loop all stop the pings, and systemd restarts us.

Threads: the camera's capture thread, the link thread (socket + replies), the power sampler.
Everything else — head, encode, metrics, policy, notifications — happens here, so none of
it needs locks.
"""

from __future__ import annotations

import os
import queue
import resource
import threading
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np

from device import status as led
from device.capture import CameraSupervisor, EndOfInput
from device.cloud import encode_picture
from device.config import ConfigError, DeviceConfig, load_config
from device.history import FloatHistory
from device.link import Link
from device.local import LocalModel, NoLink, answer_record
from device.metrics import Counters, FrameRecord, MetricsWriter, Rolling
from device.notify import Notifier
from device.outputs import check_writable
from device.pacing import FramePacer
from device.pipeline import Split, build_split, manifest_tail_ms
from device.policy import PartitionPolicy, manifest_accuracy
from device.power import PowerMeter
from hardware.camera import CameraError
from hardware.preprocess import preprocess
from wire.atomicfile import write_json_atomic
from wire.logjson import get_logger, set_level

_SEQ_MAX = (1 << 32) - 1


class Daemon:
    """Runs the pipeline until stopped, ``max_frames`` reached, or the input ends."""

    def __init__(
        self,
        cfg: DeviceConfig,
        *,
        notifier: Notifier | None = None,
        max_frames: int | None = None,
        summary_path: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.log = get_logger(__name__)
        self.notifier = notifier or Notifier()
        self.max_frames = cfg.device.max_frames if max_frames is None else max_frames
        self.summary_path = summary_path or cfg.device.summary_path
        self.counters = Counters()
        self.rolling = Rolling()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._seq = 0
        self.submitted = 0
        self.frame_errors = 0
        self.ready_sent = False
        self.t_start = time.monotonic()
        self.last_progress = self.t_start
        self._head_ms = FloatHistory(4096)
        self._encode_ms = FloatHistory(4096)
        self._preprocess_ms = FloatHistory(4096)
        self._overhead_ms = FloatHistory(4096)
        self._energy_frame = FloatHistory(4096)
        self._energy_head = FloatHistory(4096)
        self._latencies = FloatHistory(8192)
        self._pending: deque[FrameRecord] = deque()
        self._iter_start = time.monotonic()
        self._iter_cpu = time.thread_time()
        self._overhead_cpu_ms = FloatHistory(4096)
        self._build(cfg)

    # ------------------------------------------------------------------ construction

    def _build(self, cfg: DeviceConfig) -> None:
        """Everything that depends on the config (rebuilt on SIGHUP)."""
        self.cfg = cfg
        set_level(cfg.logging.level)
        self.splits: dict[str, Split] = {}
        self.locals: dict[str, LocalModel] = {}
        for h in cfg.heads:
            if h.remote:
                self.splits[h.name] = build_split(h, cfg.codec, cfg.server, cfg.device.name)
            else:
                self.locals[h.name] = LocalModel(h)
        # The partition the policy chose (the first [[heads]] to start with), and the split
        # whose session the link holds (the chosen one, or the last split chosen).
        self.chosen = cfg.heads[0].name
        first_split = next((h.name for h in cfg.heads if h.remote), None)
        self.active: Split | None = self.splits.get(self.chosen) or (
            self.splits[first_split] if first_split else None
        )
        # Answers frames while the server is unreachable (policy.local_fallback).
        self.fallback: LocalModel | None = (
            next(iter(self.locals.values())) if self.locals and cfg.policy.local_fallback else None
        )
        self.current = self.chosen  # the partition that took the latest frame
        self.pacer = FramePacer(cfg.device.fps_limit)
        heads = [s.head for s in self.splits.values()] + [m.head for m in self.locals.values()]
        self.camera = CameraSupervisor(
            cfg.camera,
            min_size=(max(h.input_hw[1] for h in heads), max(h.input_hw[0] for h in heads)),
        )
        try:
            self.camera.validate()
        except CameraError as exc:
            raise ConfigError(f"camera.params: {exc}") from None
        try:
            self.power = PowerMeter(cfg.power)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"power.params: {exc}") from None
        self.status_led = led.StatusIndicator(cfg.gpio)
        # Output files are checked here and opened by _start_components: building the daemon
        # (``--check``) writes nothing. Until then metrics go nowhere.
        check_writable(cfg.metrics.path, "metrics.path")
        if cfg.power.monitor != "none":
            check_writable(cfg.power.log_path, "power.log_path")
        self.metrics = MetricsWriter(None)
        pc = cfg.policy
        self.policy = PartitionPolicy(
            names=[h.name for h in cfg.heads],
            active=self.chosen,
            hysteresis=pc.hysteresis,
            min_dwell_s=pc.min_dwell_s,
            bandwidth_bps=pc.bandwidth_mbps * 1e6,
            enabled=pc.switching and len(cfg.heads) > 1,
            objective=pc.objective,
            latency_weight=pc.latency_weight,
            min_accuracy=pc.min_accuracy,
            probe_interval_s=pc.probe_interval_s,
            probe_budget=pc.probe_budget,
            min_samples=pc.min_samples,
            kinds={h.name: h.kind for h in cfg.heads},
            accuracy={
                **{n: manifest_accuracy(s.head.manifest.extra) for n, s in self.splits.items()},
                **{n: manifest_accuracy(m.head.manifest.extra) for n, m in self.locals.items()},
            },
        )
        self.policy.probed(time.monotonic())  # the first probe is due one interval from now
        self._probe_next: str | None = None  # partition the next frame runs on (a probe)
        self.why = "initial: first [[heads]] entry"  # why the chosen partition was chosen
        for s in self.splits.values():
            tail = s.cfg.tail_ms if s.cfg.tail_ms is not None else manifest_tail_ms(s.head)
            if tail is not None:
                self.policy.set_tail_ms(s.name, tail)
        self.link: Link | NoLink = (
            Link(
                cfg.server,
                self.active.hello,
                self.counters,
                busy=self.power.busy,
                radio=self.power.transmit,
            )
            if self.active is not None
            else NoLink()
        )
        self._probed = len(self.splits) + len(self.locals) < 2

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        self.log.info(
            "starting",
            device=self.cfg.device.name,
            heads=[h.name for h in self.cfg.heads],
            endpoints=list(self.cfg.server.endpoints),
            pid=os.getpid(),
            max_frames=self.max_frames,
        )
        self.t_start = time.monotonic()
        self.last_progress = self.t_start
        self._start_components()
        timers = _Timers(self.t_start, self.cfg.logging.summary_interval_s)
        reason = "stopped"
        while True:
            if self._stop.is_set():
                reason = "signal"
                break
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload()
                timers = _Timers(time.monotonic(), self.cfg.logging.summary_interval_s)
                continue
            now = time.monotonic()
            self._iter_start = now
            self._iter_cpu = time.thread_time()
            self._collect()
            self._duties(now, timers)
            if self.max_frames and self.submitted >= self.max_frames:
                reason = "max_frames"
                break
            if not self.link.is_alive():
                self.log.error("link_thread_died")
                self._shutdown("link_died")
                return 1
            try:
                self._step()
            except EndOfInput as exc:
                self.log.info("end_of_input", detail=str(exc))
                reason = "end_of_input"
                break
        self._shutdown(reason)
        return 0

    def _start_components(self) -> None:
        m = self.cfg.metrics
        self.metrics = MetricsWriter(m.path, m.max_bytes, m.backups)
        self.status_led.set(led.STARTING)
        self.notifier.status("starting")
        self.power.start()
        self.link.start()

    def _step(self) -> None:
        """One iteration: take a frame (if there is room) and push it through the head."""
        local = self._local_for_frame()
        outage_drop = self.cfg.server.outage == "drop"
        if local is None and outage_drop and not self.link.ready:
            # No session: keep a live camera drained (latest-frame) but do no work for nothing.
            # A lockstep source (folder/video with fps = 0) waits for us instead: a frame
            # taken here would be lost (a 6-image folder sent 5), and leaving it costs nothing.
            if self.camera.lockstep:
                self.last_progress = time.monotonic()  # holding the frame on purpose
            elif self.camera.latest(0.05) is not None:
                self.counters.captured += 1
                self.counters.dropped_outage += 1
                self.last_progress = time.monotonic()
            self.link.wait_ready(0.05)
            return
        t_wait0 = time.monotonic()
        if not self.pacer.wait(0.1):  # fps_limit: not this frame's slot yet
            return
        if local is None and not self.link.wait_slot(0.1):
            return
        if local is None and self.fallback is not None and not self.link.ready:
            return  # the session went away while we waited: the next pass answers locally
        if local is not None and self._probe_next == local.name:
            # A local probe is measured alone: its energy window (capture -> answer) must
            # not hold a server frame's radio time and idle wait (on 3G the local probes
            # measured 143 mJ beside 38 mJ on local alone, and the daemon stayed on the
            # split for 280 frames).
            self.link.wait_idle(
                min(self.cfg.server.reply_timeout_s, self.cfg.device.drain_timeout_s)
            )
            self._collect()
        # A probe on another server partition moves the session first and then takes the
        # frame, so the HELLO round trip is not counted as that partition's latency/energy.
        probe_split = self.splits.get(self._probe_next or "") if local is None else None
        back = self.active if probe_split is not None and probe_split is not self.active else None
        if back is not None and not self._open_session(probe_split, wait=True):
            self.log.warning("probe_session_failed", partition=probe_split.name)
            self._open_session(back)
            return
        t_wait1 = time.monotonic()
        frame = self.camera.latest(0.2)
        if frame is None:
            if back is not None:
                self._open_session(back)
            return
        t_wait2 = time.monotonic()
        self.pacer.started(t_wait2)
        self.counters.captured += 1
        first = not self._probed
        if first:
            self._probe(frame.image)
        self._probe_next = None
        try:
            rec = self._process(frame) if local is None else self._process_local(frame, local)
        except Exception as exc:  # one bad frame must never end the loop
            self.frame_errors += 1
            self.log.warning("frame_failed", error=f"{type(exc).__name__}: {exc}")
            rec = None
        if back is not None:  # one probe frame sent: its reply, then the old session again
            self._open_session(back)
        self.last_progress = time.monotonic()
        if rec is not None and not first:
            # The daemon's own cost for this frame: the whole iteration (metrics, replies,
            # duties, hand-off to the link) minus blocking waits and the model work.
            rec.overhead_ms = (
                (self.last_progress - self._iter_start - (t_wait1 - t_wait0) - (t_wait2 - t_wait1))
                * 1e3
                - rec.preprocess_ms
                - rec.head_ms
                - rec.encode_ms
            )
            self._overhead_ms.append(rec.overhead_ms)
            # Same in CPU time of this thread: immune to preemption on a busy machine.
            rec.overhead_cpu_ms = (time.thread_time() - self._iter_cpu) * 1e3 - rec.model_cpu_ms
            self._overhead_cpu_ms.append(rec.overhead_cpu_ms)

    def _begin_frame(self, frame: Any, name: str, input_hw: tuple[int, int]) -> _FrameStart:
        """The part every partition shares: the frame's record and its preprocessed image.

        Why one place: a record's clocks (capture age, preprocessing, CPU time) must be
        taken the same way on every partition — the policy and the benchmarks compare
        partitions by them.
        """
        t_taken = time.monotonic()
        self._seq = self._seq % _SEQ_MAX + 1
        rec = FrameRecord(
            seq=self._seq,
            head=name,
            capture_ts=time.time() - (t_taken - frame.timestamp),
            capture_mono=frame.timestamp,
            frame_number=frame.frame_number,
            label=frame.label,
            capture_ms=(t_taken - frame.timestamp) * 1e3,
        )
        c0 = time.thread_time()
        t0 = time.monotonic()
        image = preprocess(frame.image, size=input_hw)
        return _FrameStart(rec, image, c0, t0, time.monotonic())

    def _process(self, frame: Any) -> FrameRecord:
        split = self.active
        rec, image, c0, t0, t1 = self._begin_frame(frame, split.name, split.head.input_hw)
        if split.cloud:  # no head: the picture itself, as a JPEG, is the payload
            t2 = t1
            head_ms = 0.0
            with self.power.busy():
                payload = encode_picture(split.codec, image)
        else:
            with self.power.busy():
                out = split.head.run(image)
            t2 = time.monotonic()
            head_ms = out.head_ms
            with self.power.busy():
                payload = split.codec.encode_int8(out.tensor)
        t3 = time.monotonic()
        rec.model_cpu_ms = (time.thread_time() - c0) * 1e3
        rec.preprocess_ms = (t1 - t0) * 1e3
        rec.head_t0, rec.head_t1 = t1, t2
        rec.head_ms = head_ms
        rec.encode_ms = (t3 - t2) * 1e3
        rec.bytes = len(payload)
        self.link.submit(rec, payload)
        self.submitted += 1
        self.policy.observe_device(split.name, rec.head_ms, rec.encode_ms, rec.bytes)
        self._head_ms.append(rec.head_ms)
        self._encode_ms.append(rec.encode_ms)
        self._preprocess_ms.append(rec.preprocess_ms)
        return rec

    def _local_for_frame(self) -> LocalModel | None:
        """The local partition that takes the next frame, or None to send it to the server.

        A probe's partition first (a split one only while there is a session); then the
        chosen partition when it is a local one; the fallback while the server is
        unreachable (no session), so a server outage costs answers only for the frames that
        were in flight when it went away.
        """
        probe = self._probe_next
        if probe in self.locals:
            return self.locals[probe]
        if probe in self.splits and self.link.ready:
            return None
        local = self.locals.get(self.chosen)
        if local is None and self.fallback is not None and not self.link.ready:
            local = self.fallback
        now_on = local.name if local is not None else self.chosen
        if now_on != self.current:
            if local is not None and self.chosen not in self.locals:
                self.log.warning(
                    "local_fallback", partition=local.name, chosen=self.chosen,
                    server=self.link.state.value,
                )  # fmt: skip
            elif self.current in self.locals and self.chosen not in self.locals:
                self.log.info("local_fallback_end", partition=self.chosen, after=self.current)
            self.current = now_on
        return local

    def _process_local(self, frame: Any, local: LocalModel) -> FrameRecord:
        """The whole model on the board: the answer is ready when the head returns."""
        rec, image, c0, t0, t1 = self._begin_frame(frame, local.name, local.head.input_hw)
        with self.power.busy():
            ans = local.classify(image)
        t2 = time.monotonic()
        rec.model_cpu_ms = (time.thread_time() - c0) * 1e3
        rec.preprocess_ms = (t1 - t0) * 1e3
        rec.head_t0, rec.head_t1 = t1, t2
        rec.head_ms = ans.head_ms
        answer_record(rec, ans, t2)
        self.policy.observe_device(local.name, rec.head_ms, 0.0, 0)
        self.submitted += 1
        self.counters.answered_local += 1
        self._pending.append(rec)
        self._head_ms.append(rec.head_ms)
        self._encode_ms.append(0.0)
        self._preprocess_ms.append(rec.preprocess_ms)
        return rec

    def _probe(self, image: np.ndarray) -> None:
        """Run every head once on a real frame: warm-up plus the policy's first estimates."""
        self._probed = True
        for s in self.splits.values():
            try:
                x = preprocess(image, size=s.head.input_hw)
                if s.cloud:  # no head to warm up: the JPEG of the picture is the device work
                    encode_picture(s.codec, x)
                    t = time.monotonic()
                    payload = encode_picture(s.codec, x)
                    head_ms = 0.0
                else:
                    s.head.run(x)  # the first invoke pays one-off set-up (XNNPACK packing)
                    out = s.head.run(x)
                    t = time.monotonic()
                    payload = s.codec.encode_int8(out.tensor)
                    head_ms = out.head_ms
                enc = (time.monotonic() - t) * 1e3
                self.policy.observe_device(s.name, head_ms, enc, len(payload))
            except Exception as exc:
                self.log.warning("probe_failed", head=s.name, error=f"{type(exc).__name__}: {exc}")
        for m in self.locals.values():
            try:
                x = preprocess(image, size=m.head.input_hw)
                m.classify(x)  # warm-up: XNNPACK packing is paid here, not by a real frame
                self.policy.observe_device(m.name, m.classify(x).head_ms, 0.0, 0)
            except Exception as exc:
                self.log.warning("probe_failed", head=m.name, error=f"{type(exc).__name__}: {exc}")
        self.log.info(
            "splits_probed",
            estimates_ms={
                n: (round(e, 3) if (e := self.policy.estimate_ms(n)) is not None else None)
                for n in self.splits
            },
        )

    # ------------------------------------------------------------------ completions

    def _collect(self, *, final: bool = False) -> None:
        """Finalize completed frames once the power sampler has covered their window."""
        while True:
            try:
                self._pending.append(self.link.done.get_nowait())
            except queue.Empty:
                break
        now = time.monotonic()
        while self._pending:
            rec = self._pending[0]
            end = rec.reply_mono if rec.status == "ok" else rec.head_t1
            if final:
                self.power.wait_until(end, 0.2)
            elif not self.power.covered(rec.capture_mono, end) and now - end < 0.5:
                break  # the sampler lags a few ms behind; come back next iteration
            self._finalize(self._pending.popleft())

    def _finalize(self, rec: FrameRecord) -> None:
        if rec.head_t1 > rec.head_t0:
            rec.energy_head_mj = self.power.energy_mj(rec.head_t0, rec.head_t1)
        if rec.status == "ok":
            rec.energy_frame_mj = self.power.energy_mj(rec.capture_mono, rec.reply_mono)
            if rec.label is not None and (rec.top1_label is not None or rec.top1 is not None):
                predicted = rec.top1_label if rec.top1_label is not None else str(rec.top1)
                rec.correct = predicted == rec.label
                self.counters.scored += 1
                self.counters.correct += int(rec.correct)
            self.rolling.add(rec.reply_mono, rec.latency_ms)
            if rec.latency_ms is not None:
                self._latencies.append(rec.latency_ms)
            if rec.energy_frame_mj is not None:
                self._energy_frame.append(rec.energy_frame_mj)
            server_ms = (
                (rec.server_decode_ms or 0)
                + (rec.server_queue_ms or 0)
                + (rec.server_compute_ms or 0)
            )
            if rec.head in self.policy.splits:
                self._observe_partition(rec)
            if rec.head in self.splits:
                self.policy.observe_reply(
                    rec.head,
                    rec.bytes,
                    rec.rtt_ms or 0.0,
                    server_ms,
                    rec.server_compute_ms or 0.0,
                    int((rec.server_load or {}).get("queue_depth", 0)),
                )
            if not self.ready_sent:
                self._send_ready("first frame replied")
        if rec.energy_head_mj is not None:
            self._energy_head.append(rec.energy_head_mj)
        self.metrics.write(rec.to_json())

    def _observe_partition(self, rec: FrameRecord) -> None:
        """The policy's measure of an answered frame: from when the loop took the frame.

        Why not from capture like the metrics: the frame's age when taken is the camera's,
        not the partition's. At start-up the folder camera handed out frames 150-220 ms
        old; the three exploration probes of ``local`` measured with them priced it at 3x
        its cost, and the daemon stayed on the split for 230 frames.
        """
        taken = rec.capture_mono + rec.capture_ms / 1e3
        energy = self.power.energy_mj(taken, rec.reply_mono)
        latency = None if rec.latency_ms is None else rec.latency_ms - rec.capture_ms
        self.policy.observe_frame(rec.head, rec.reply_mono, energy, latency)

    def _send_ready(self, why: str) -> None:
        self.ready_sent = True
        self.notifier.ready(status=f"ready: {why}")
        self.log.info("ready", reason=why, after_s=round(time.monotonic() - self.t_start, 3))

    # ------------------------------------------------------------------ periodic duties

    def _duties(self, now: float, timers: _Timers) -> None:
        if not self.ready_sent and now - self.t_start >= self.cfg.device.startup_timeout_s:
            self._send_ready("startup timeout, no reply yet")
        wd = self.notifier.watchdog_interval_s or self.cfg.device.watchdog_interval_s
        if now >= timers.watchdog:
            timers.watchdog = now + wd
            stalled_for = now - self.last_progress
            if stalled_for <= self.cfg.device.stall_timeout_s:
                self.notifier.watchdog()
            elif not timers.stall_logged:
                timers.stall_logged = True
                self.log.error(
                    "pipeline_stalled",
                    seconds=round(stalled_for, 3),
                    camera=self.camera.status,
                    server=self.link.state.value,
                )
        if now - self.last_progress <= self.cfg.device.stall_timeout_s:
            timers.stall_logged = False
        self._update_led()
        if now >= timers.status:
            timers.status = now + 1.0
            self._update_status(now)
            self.power.drain_log()
        if now >= timers.summary:
            self._summary_line(now, timers.summary_from)
            timers.summary_from = now
            timers.summary = now + self.cfg.logging.summary_interval_s
        if self.policy.enabled:
            # Pongs report load too (BottleNet: the board learns the server's load by pinging).
            self.policy.observe_load(self.link.server_load.queue_depth)
            self._maybe_switch(now)
            if self._probe_next is None and (probe := self.policy.probe_due(now)) is not None:
                self.policy.probed(now, probe)
                self._probe_next = probe
                self.log.debug("partition_probe", partition=probe, chosen=self.chosen)

    def _update_led(self) -> None:
        if not self.camera.health.ok and self.camera.health.failures:
            self.status_led.set(led.ERROR)
        elif self.link.ready:
            self.status_led.set(led.STREAMING)
        else:
            self.status_led.set(led.SERVER_OFFLINE if self.ready_sent else led.STARTING)

    def _update_status(self, now: float) -> None:
        fps = self.rolling.fps(now)
        self.notifier.status(
            f"fps={fps:.1f} server={self.link.state.value} partition={self.current} "
            f"chosen={self.chosen} objective={self.policy.objective} {self._estimates_text()} "
            f"camera={self.camera.status} inflight={self.link.inflight} "
            f"replied={self.counters.replied} lost={self.counters.lost}"
        )

    def _estimates_text(self) -> str:
        """Why the chosen partition: every partition's estimates, compact for STATUS=."""
        parts = []
        for n, e in self.policy.estimates().items():
            lat, en = e["latency_ms"], e["energy_mj"]
            parts.append(
                f"{n}:{'-' if lat is None else f'{lat:.1f}'}ms/{'-' if en is None else f'{en:.1f}'}mJ"
            )
        return "est=" + ",".join(parts)

    def _summary_line(self, now: float, since: float) -> None:
        p50, p99 = self.rolling.percentiles()
        self.log.info(
            "summary",
            fps=round(self.rolling.fps(now), 2),
            p50_ms=_r(p50),
            p99_ms=_r(p99),
            mean_power_w=_r(self.power.mean_power_w(since, now)),
            server=self.link.state.value,
            head=self.current,
            chosen=self.chosen,
            why=self.why,
            estimates=self.policy.estimates(),
            inflight=self.link.inflight,
            camera_dropped=self.camera.frames_dropped,
            **asdict(self.counters),
        )

    def _maybe_switch(self, now: float) -> None:
        decision = self.policy.decide(now)
        if decision is None:
            return
        split = self.splits.get(decision.new)
        if split is not None and split is not self.active:
            self._open_session(split)
        # A local partition keeps the last split's session: heartbeats tell when the server
        # is there, replies to probes refresh the link's bandwidth estimate.
        self.chosen = decision.new
        self.policy.switched(decision.new, now)
        self.counters.switches += 1
        self.why = f"{decision.reason} estimates_ms={decision.estimates_ms}"
        if decision.energy_mj:
            self.why += f" energy_mj={decision.energy_mj}"
        self.log.info(
            "partition_switch",
            old=decision.old,
            new=decision.new,
            estimates_ms=decision.estimates_ms,
            energy_mj=decision.energy_mj,
            reason=decision.reason,
        )

    def _open_session(self, split: Split, *, wait: bool = False) -> bool:
        """Move the link's session to ``split``: the old session's frames come home first.

        Bounded by drain_timeout_s: the loop (and so the watchdog) must not hang on it.
        ``wait``: also wait (up to hello_timeout_s) until the server accepted the new
        session, and say whether it did. A probe takes its frame right after the switch;
        submitted before the HELLO's reply, the frame met no session and was dropped — on
        3G every start-up probe of the cloud was, so exploration never ended and the
        daemon answered 6 frames of 1000.
        """
        self.link.wait_idle(min(self.cfg.server.reply_timeout_s, self.cfg.device.drain_timeout_s))
        self._collect()
        self.active = split
        old = self.link.session_id
        self.link.switch_session(split.hello)
        if not wait:
            return True
        deadline = time.monotonic() + self.cfg.server.hello_timeout_s
        while time.monotonic() < deadline:
            # Until the link thread took the switch, ``ready`` is the old session's.
            if self.link.session_id not in (0, old) and self.link.ready:
                return True
            time.sleep(0.002)
        return False

    # ------------------------------------------------------------------ reload / shutdown

    def _do_reload(self) -> None:
        if self.cfg.path is None:
            self.log.warning("reload_ignored", reason="no config file")
            return
        try:
            new_cfg = load_config(self.cfg.path)
        except ValueError as exc:
            self.log.error("reload_failed", error=str(exc), keeping="old config")
            return
        if self._radio_only_change(new_cfg):
            # The link type changed under a running daemon (Wi-Fi -> 3G): the simulated rail
            # follows without a rebuild, so the policy keeps its estimates and the energy
            # objective sees the new transmit cost on the next frame.
            radio = new_cfg.power.params.get("radio")
            try:
                self.power.set_radio(radio)
            except ValueError as exc:
                self.log.error("reload_failed", error=f"power.params.radio: {exc}", keeping="old")
                return
            self.cfg = new_cfg
            self.log.info("radio_changed", radio=radio)
            return
        self.log.info("reloading", config=str(self.cfg.path))
        self.notifier.reloading()
        self._teardown()
        try:
            self._build(new_cfg)
        except Exception as exc:
            self.log.error(
                "reload_failed", error=f"{type(exc).__name__}: {exc}", keeping="old config"
            )
            self._build(self.cfg_previous)
        self._start_components()
        self.ready_sent = False
        self.t_start = time.monotonic()
        self.last_progress = self.t_start

    def _radio_only_change(self, new_cfg: DeviceConfig) -> bool:
        """True when ``new_cfg`` differs from the running config only in power.params.radio."""
        old_params = dict(self.cfg.power.params)
        new_params = dict(new_cfg.power.params)
        if old_params.get("radio") == new_params.get("radio"):
            return False
        old_params.pop("radio", None)
        new_params.pop("radio", None)
        if old_params != new_params:
            return False
        same_power = msgspec.structs.replace(new_cfg.power, params=self.cfg.power.params)
        return msgspec.structs.replace(new_cfg, power=same_power) == self.cfg

    def _teardown(self) -> None:
        self.cfg_previous = self.cfg
        self.camera.stop()
        self.link.wait_idle(self.cfg.device.drain_timeout_s)
        self.link.stop()
        self.link.join(timeout=5.0)
        self._collect(final=True)
        self.power.stop()
        self.metrics.close()
        self.status_led.close()

    def _shutdown(self, reason: str) -> None:
        self.notifier.stopping()
        self.notifier.status(f"stopping: {reason}")
        self.log.info("stopping", reason=reason, inflight=self.link.inflight)
        self.camera.stop()
        drained = self.link.wait_idle(self.cfg.device.drain_timeout_s)
        self._collect()
        self.link.stop()
        self.link.join(timeout=5.0)
        self._collect(final=True)
        now = time.monotonic()
        summary = self.run_summary(now, reason, drained)
        self.power.stop()
        self.metrics.close()
        self.status_led.close()
        self.log.info("run_summary", **summary)
        if self.summary_path is not None:
            _atomic_json(self.summary_path, summary)
        self.notifier.close()

    def run_summary(self, now: float, reason: str = "", drained: bool = True) -> dict[str, Any]:
        elapsed = max(now - self.t_start, 1e-9)
        lat = np.fromiter(self._latencies, dtype=np.float64) if self._latencies else None
        return {
            "reason": reason,
            "drained": drained,
            "elapsed_s": round(elapsed, 3),
            "frames_submitted": self.submitted,
            "fps": round((self.counters.replied + self.counters.answered_local) / elapsed, 3),
            "latency_p50_ms": _r(float(np.percentile(lat, 50)) if lat is not None else None),
            "latency_p99_ms": _r(float(np.percentile(lat, 99)) if lat is not None else None),
            "head_ms_median": _r(_median(self._head_ms)),
            "encode_ms_median": _r(_median(self._encode_ms)),
            "overhead_ms_median": _r(_median(self._overhead_ms)),
            "overhead_ms_p90": _r(_pct(self._overhead_ms, 90)),
            "overhead_cpu_ms_median": _r(_median(self._overhead_cpu_ms)),
            "link_cpu_ms_per_frame": _r(
                self.link.cpu_s * 1e3 / self.counters.sent if self.counters.sent else None
            ),
            "preprocess_ms_median": _r(_median(self._preprocess_ms)),
            "peak_rss_mb": _peak_rss_mb(),
            "energy_head_mj_mean": _r(_mean(self._energy_head)),
            "energy_frame_mj_mean": _r(_mean(self._energy_frame)),
            "mean_power_w": _r(self.power.mean_power_w(self.t_start, now)),
            "accuracy": (
                round(self.counters.correct / self.counters.scored, 4)
                if self.counters.scored
                else None
            ),
            "sessions": self.link.sessions,
            "active_head": self.current,
            "chosen_partition": self.chosen,
            "partition_estimates": self.policy.estimates(),
            "frame_errors": self.frame_errors,
            "camera_dropped": self.camera.frames_dropped,
            "camera_failures": self.camera.health.failures,
            "metrics_lines": self.metrics.lines,
            **asdict(self.counters),
        }


class _FrameStart(NamedTuple):
    """What :meth:`Daemon._begin_frame` hands the partition's own processing."""

    rec: FrameRecord
    image: np.ndarray
    cpu0: float  # thread CPU time before preprocessing
    t0: float  # monotonic time before preprocessing
    t1: float  # ... and after it


class _Timers:
    def __init__(self, now: float, summary_interval_s: float) -> None:
        self.watchdog = now
        self.status = now
        self.summary = now + summary_interval_s
        self.summary_from = now
        self.stall_logged = False


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def _median(d: FloatHistory) -> float | None:
    return float(np.median(np.fromiter(d, dtype=np.float64))) if d else None


def _pct(d: FloatHistory, q: float) -> float | None:
    return float(np.percentile(np.fromiter(d, dtype=np.float64), q)) if d else None


def _mean(d: FloatHistory) -> float | None:
    return float(np.mean(np.fromiter(d, dtype=np.float64))) if d else None


def _peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM``).

    Not ``ru_maxrss``: Linux carries it over fork and exec, so a daemon started by a big
    parent (a benchmark or test runner that imported torch) reported the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
    write_json_atomic(path, data, default=str)
