"""`ai-suite up p2 --replicas inference-chat=2`: a copy of the service on the next free port, registered with
the gateway through CHAT_API_BASES."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil
import pytest

from services.gateway.settings import GatewaySettings
from services.stack import cli
from services.stack.procs import RunningService, State, started_since_boot
from services.stack.replicas import ReplicaError, parse_replicas
from services.stack.runner import Stack, StackError


def env(tmp_path: Path) -> dict[str, str]:
    return {"DATA_DIR": str(tmp_path / "d"), "MODELS_DIR": str(tmp_path / "m"), "INFERENCE_PORT": "18001",
            "API_GATEWAY_PORT": "18000", "EMBEDDING_PORT": "18002", "RAG_PORT": "18003",
            "INFERENCE_CODE_PORT": "18004", "POSTGRES_PORT": "15432"}


def test_parse_replicas_reads_service_counts() -> None:
    assert parse_replicas(["inference-chat=2", "inference-code=3"]) == {"inference-chat": 2, "inference-code": 3}
    for bad in ("inference-chat", "inference-chat=0", "inference-chat=99", "x=two", "../x=2"):
        with pytest.raises(ReplicaError):
            parse_replicas([bad])


def test_p2_with_a_second_inference_chat(tmp_path: Path) -> None:
    stack = Stack("p2", env=env(tmp_path), replicas={"inference-chat": 3})
    used = {p.port for name, s in stack.services.items() if not name.startswith("inference-chat-") for p in s.ports}
    first, second, third = (stack.services[n] for n in ("inference-chat", "inference-chat-2", "inference-chat-3"))
    assert stack.replicas == ["inference-chat-2", "inference-chat-3"]
    # the next ports above 18001 that no other service of p2 uses: 18002 to 18004 are taken
    assert [s.ports[0].port for s in (second, third)] == [18005, 18006] and not {18005, 18006} & used
    assert second.env["INFERENCE_PORT"] == "18005" and second.health_url == "http://127.0.0.1:18005/health"
    assert second.argv == first.argv and second.env["MODEL_ALIAS"] == first.env["MODEL_ALIAS"]
    assert second.log_path.name == "inference-chat-2.log"
    replica_doc = stack.doc["services"]["inference-chat-2"]
    assert replica_doc["environment"]["LOG_FILE"] == "/data/logs/inference-chat-2.log"  # in a container
    gateway = stack.services["api-gateway"].env
    assert gateway["CHAT_API_BASES"] == "http://127.0.0.1:18005/v1,http://127.0.0.1:18006/v1"
    assert gateway["CODE_API_BASES"] == ""  # in p2 the code model has its own service
    settings = GatewaySettings(_env_file=None, **{"CHAT_API_BASES": gateway["CHAT_API_BASES"]})
    assert [b.api_base for b in settings.extra_backends("chat")] == [
        "http://127.0.0.1:18005/v1", "http://127.0.0.1:18006/v1"]


def test_p1_replica_serves_both_names(tmp_path: Path) -> None:
    stack = Stack("p1", env=env(tmp_path), replicas={"inference-chat": 2})
    gateway = stack.services["api-gateway"].env
    assert gateway["CHAT_API_BASES"] == gateway["CODE_API_BASES"] == "http://127.0.0.1:18002/v1"


def test_without_replicas_nothing_changes(tmp_path: Path) -> None:
    stack = Stack("p2", env=env(tmp_path))
    assert stack.replicas == [] and "inference-chat-2" not in stack.services
    assert stack.services["api-gateway"].env["CHAT_API_BASES"] == ""


def test_an_unknown_service_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="no service 'inference-tts'"):
        Stack("p2", env=env(tmp_path), replicas={"inference-tts": 2})


@pytest.mark.parametrize("spec, message", [("inference-chat", "write SERVICE=N"),
                                           ("inference-tts=2", "no service 'inference-tts'")])
def test_up_refuses_bad_replicas_before_starting_anything(spec: str, message: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in env(tmp_path).items():
        monkeypatch.setenv(key, value)
    started: list[object] = []
    monkeypatch.setattr("services.stack.cli.subprocess.Popen", lambda *a, **k: started.append(a))
    assert cli.main(["up", "p2", "--replicas", spec]) == cli.EXIT_FAILED
    assert message in capsys.readouterr().out.replace("\n", " ")
    assert started == []


def test_status_and_down_know_the_replicas_a_start_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in env(tmp_path).items():
        monkeypatch.setenv(key, value)
    # what `ai-suite up p2 --replicas inference-chat=2` leaves in the state file: here, the replica alone runs
    replica = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        stack = Stack("p2", env=env(tmp_path), replicas={"inference-chat": 2})
        state = State.load(stack.state_path)
        process = psutil.Process(replica.pid)
        spec = stack.services["inference-chat-2"]
        state.services["inference-chat-2"] = RunningService(
            "inference-chat-2", replica.pid, process.create_time(), [p.port for p in spec.ports],
            str(spec.log_path), spec.argv, since_boot=started_since_boot(process))
        state.save()
        assert cli.main(["status", "p2"]) == cli.EXIT_OK
        assert "inference-chat-2" in capsys.readouterr().out
        assert cli.main(["down", "p2"]) == cli.EXIT_OK
        assert "inference-chat-2: stopped" in capsys.readouterr().out
        assert replica.wait(timeout=10) is not None
        assert not State.load(stack.state_path).services
    finally:
        replica.kill()
        replica.wait()
