"""Live alerts: a Monitor loop whose entropy collapses prints the rule once and POSTs it to a real
HTTP server on 127.0.0.1; a dead or stalled webhook never holds up the loop; the cooldown speaks
once per rule and again when the severity rises; the HF callback stops a Trainer on halt_on."""

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from entropymon.alerting.watch import WEBHOOK_ENV, AlertWatcher
from entropymon.alerting.webhook import WebhookSender
from entropymon.errors import InputError
from entropymon.hooks.monitor import Monitor


class Endpoint:
    """A real HTTP server on 127.0.0.1 recording the JSON bodies POSTed to it; ``hold`` stalls every
    request until ``release()``."""

    def __init__(self, hold=False):
        self.bodies, self.started = [], threading.Event()
        self._release = threading.Event()
        if not hold:
            self._release.set()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                endpoint.started.set()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint._release.wait(30)
                endpoint.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self):
        self._release.set()

    def close(self):
        self.release()
        self.server.shutdown()
        self.server.server_close()


def collapsing_loop(monitor, steps=40, start=0):
    """Entropy 0.6 * exp(-step / 8) at every token: below 30% of its start by step ~12."""
    mask = torch.ones(4, 6, dtype=torch.bool)
    for step in range(start, start + steps):
        monitor.observe(step, entropies=torch.full((4, 6), 0.6 * np.exp(-step / 8)), mask=mask)


def test_a_live_monitor_whose_entropy_collapses_posts_the_alert_to_a_real_local_server(tmp_path, capsys):
    endpoint = Endpoint()
    try:
        monitor = Monitor(tmp_path, run="live", token_rows_every=0, alert_webhook=endpoint.url)
        collapsing_loop(monitor)
        monitor.close()
        bodies = [b for b in endpoint.bodies if b["alert"]["rule"] == "entropy_collapse"]
    finally:
        endpoint.close()
    assert len(bodies) == 1, endpoint.bodies
    body = bodies[0]
    assert body["run"] == "live" and body["text"].startswith("entropymon warning [entropy_collapse] step")
    alert = body["alert"]
    # the same alert the offline diagnosis gives on the written run
    from entropymon import read_run
    from entropymon.analysis import diagnose

    offline = {a.rule: a.to_dict() for a in diagnose(read_run(monitor.path))}
    assert alert == json.loads(json.dumps(offline["entropy_collapse"]))
    assert alert["remedies"] and alert["remedies"][0]["trl"] == "epsilon_high=0.28"
    printed = [line for line in capsys.readouterr().err.splitlines() if "[entropy_collapse]" in line]
    assert printed == [body["text"]]  # one line in the training log, once
    assert [a.rule for a in monitor.alerts] == ["entropy_collapse"] and monitor.worst_alert == "warning"


def test_a_stalled_webhook_does_not_hold_up_the_training_loop(tmp_path):
    endpoint = Endpoint(hold=True)
    try:
        monitor = Monitor(tmp_path, run="stalled", token_rows_every=0, alert_webhook=endpoint.url)
        collapsing_loop(monitor)
        monitor.flush()
        monitor.alert_watcher.wait_idle(10)
        assert endpoint.started.wait(10)  # the POST is under way and the server is holding it ...
        collapsing_loop(monitor, steps=60, start=40)  # ... while training goes on and finishes
        monitor.close()
        assert not endpoint.bodies  # the loop and close() returned while the request was still held
        assert monitor.errors == 0  # every step of both loops was observed (none refused as going back)
        assert monitor.alerts[0].rule == "entropy_collapse"
    finally:
        endpoint.close()


def test_a_dead_webhook_is_counted_and_training_goes_on(tmp_path):
    dead = Endpoint()
    url = dead.url
    dead.close()  # nothing listens on that port any more: connection refused
    sender = WebhookSender(url, timeout_s=1.0, retries=1, backoff_s=0.01)
    sender.send({"text": "x", "alert": {}})
    assert sender.close(timeout=10)
    assert (sender.sent, sender.failed) == (0, 1)
    monitor = Monitor(tmp_path, run="dead", token_rows_every=0, alert_webhook=url)
    collapsing_loop(monitor)
    monitor.close()
    assert monitor.errors == 0 and monitor.alerts


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread signal masks from Linux /proc")
def test_the_monitor_alert_and_webhook_threads_block_sigterm_and_sigint(tmp_path):
    """Their job is the background; a signal must reach the training (main) thread (see
    log/shutdown.keep_signals_on_the_main_thread)."""
    from conftest import blocked_signals

    dead = Endpoint()
    url = dead.url
    dead.close()
    monitor = Monitor(tmp_path, run="masks", token_rows_every=0, alert_webhook=url)
    try:
        collapsing_loop(monitor)
        ours = {t.name.split("[")[0]: t for t in threading.enumerate() if t.name.startswith("entropymon")}
        assert {"entropymon-monitor", "entropymon-alerts", "entropymon-webhook", "entropymon-writer"} <= set(ours)
        for name, thread in ours.items():
            assert {int(signal.SIGTERM), int(signal.SIGINT)} <= blocked_signals(thread.native_id), name
    finally:
        monitor.close()


def test_the_webhook_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    endpoint = Endpoint()
    monkeypatch.setenv(WEBHOOK_ENV, endpoint.url)
    try:
        monitor = Monitor(tmp_path, run="env", token_rows_every=0)
        collapsing_loop(monitor)
        monitor.close()
    finally:
        endpoint.close()
    assert [b["alert"]["rule"] for b in endpoint.bodies] == ["entropy_collapse"]


def _rows(entropy, reward):
    return [{"entropy_mean": h, "reward_mean": r} for h, r in zip(entropy, reward)]


def test_each_rule_speaks_once_and_again_only_when_its_severity_rises():
    lines = []
    watcher = AlertWatcher(["divergence"], inline=True, write=lines.append, bounds=(0, 1))
    entropy = [0.15, 0.15, 0.2, 0.25, 1.5, 4.6, 5.9, 6.5, 6.9, 7.0, 7.0, 7.0]
    reward = [0.8, 0.95, 1.0, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    for step, row in enumerate(_rows(entropy, reward)):
        watcher.add_row(step, row)
    # surge from step 4 (1.5 > 3 x 0.167), seen at 5: a warning; reward collapse from 6, seen at 7: critical
    assert [(a.severity, a.step, a.first_visible_step) for a in watcher.alerts] == [("warning", 4, 5), ("critical", 4, 7)]
    assert len(lines) == 2 and lines[1].startswith("entropymon critical [divergence] step 4:")
    assert watcher.worst == "critical" and watcher.first_at_least("critical").first_visible_step == 7


def test_watcher_rejects_bad_settings_with_the_argument_named():
    with pytest.raises(InputError, match="rules"):
        AlertWatcher(["no_such_rule"], inline=True)
    with pytest.raises(InputError, match="alert_webhook"):
        WebhookSender("ftp://example")
    with pytest.raises(InputError, match="alert_webhook"):
        Monitor("unused", alerts=False, alert_webhook="http://127.0.0.1:9/")


def test_hf_callback_halts_a_trainer_on_a_critical_alert(tmp_path, capsys):
    pytest.importorskip("transformers")
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from entropymon.integrations.hf import EntropymonCallback

    callback = EntropymonCallback(tmp_path, run="hf", halt_on="critical")
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    state, control = TrainerState(), TrainerControl()
    callback.on_train_begin(args, state, control)
    callback.watcher.min_interval_s = 0.0
    reward = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    for step, r in enumerate(reward, start=1):
        state.global_step = step
        callback.on_log(args, state, control, logs={"reward": r, "entropy": 0.3})
        callback.watcher.wait_idle(10)
        callback.on_step_end(args, state, control)
        if control.should_training_stop:
            break
    callback.on_train_end(args, state, control)
    # reward 1 -> 0 from step 5 (more than half its range below its best), seen at step 6
    assert control.should_training_stop and state.global_step == 6
    assert "stopping training at step 6" in callback.halter.reason and "[divergence]" in callback.halter.reason
    assert callback.halter.reason in capsys.readouterr().err
