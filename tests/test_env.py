"""The environment record: full CPU identity, the command as typed, only installed packages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import env

AMD_VM = """\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
microcode\t: 0x1000065
cpu MHz\t\t: 2596.132
flags\t\t: fpu vme

processor\t: 1
vendor_id\t: SomethingElse
model name\t: not the first processor
"""

ARM = """\
processor\t: 0
BogoMIPS\t: 48.00
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
"""


def test_x86_identity_from_proc_cpuinfo(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(AMD_VM, encoding="utf-8")
    assert env.proc_cpuinfo(path) == {
        "vendor": "AuthenticAMD",
        "family": "25",
        "model": "17",
        "model_name": "AMD EPYC",
        "stepping": "1",
        "microcode": "0x1000065",
    }
    cpu = env.cpu_record(path)
    assert (cpu["vendor"], cpu["family"], cpu["model"], cpu["stepping"]) == ("AuthenticAMD", 25, 17, 1)
    assert cpu["brand"] == "AMD EPYC" and cpu["microcode"] == "0x1000065"
    assert env.cpu_description(cpu) == "AMD EPYC (AuthenticAMD family 25 model 17 stepping 1, microcode 0x1000065)"


def test_arm_identity(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(ARM, encoding="utf-8")
    cpu = env.cpu_record(path)
    assert (cpu["implementer"], cpu["part"], cpu["variant"], cpu["revision"]) == ("0x41", "0xd0c", "0x3", "1")
    assert "implementer 0x41 part 0xd0c" in env.cpu_description(cpu)


def test_unreadable_cpuinfo_leaves_keys_out(tmp_path: Path) -> None:
    assert env.proc_cpuinfo(tmp_path / "absent") == {}
    cpu = env.cpu_record(tmp_path / "absent")
    assert None not in cpu.values() and "" not in cpu.values()


def test_absent_packages_are_omitted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env, "PACKAGES", ("numpy", "surely-not-installed-pkg"))
    assert list(env.package_versions()) == ["numpy"]


@pytest.mark.parametrize(
    ("orig_argv", "argv", "expected"),
    [
        # python -m harness: argv[0] is harness/__main__.py, which nobody typed; orig_argv has the truth.
        (
            [".venv/bin/python", "-m", "harness", "run", "--models", "x"],
            ["/repo/harness/__main__.py", "run", "--models", "x"],
            [".venv/bin/python", "-m", "harness", "run", "--models", "x"],
        ),
        # The console script.
        (
            ["/repo/.venv/bin/python", "/repo/.venv/bin/harness", "run"],
            ["/repo/.venv/bin/harness", "run"],
            ["harness", "run"],
        ),
    ],
)
def test_command_as_typed(
    monkeypatch: pytest.MonkeyPatch, orig_argv: list[str], argv: list[str], expected: list[str]
) -> None:
    monkeypatch.setattr(sys, "orig_argv", orig_argv, raising=False)
    monkeypatch.setattr(sys, "argv", argv)
    assert env.command_line() == expected


# --- engine facts: each backend's own `environment()` ------------------------------------------------------
def test_engine_facts_come_from_the_backends_under_their_keys() -> None:
    facts = env.engine_environment()
    assert {"llama_cpp_system_info", "onnxruntime"} <= set(facts)
    if facts["llama_cpp_system_info"] is not None:  # llama-cpp-python installed: its build line, as before
        assert isinstance(facts["llama_cpp_system_info"], str) and "=" in facts["llama_cpp_system_info"]
    if facts["onnxruntime"] is not None:
        assert set(facts["onnxruntime"]) == {"version", "providers", "genai_version"}
        assert "CPUExecutionProvider" in facts["onnxruntime"]["providers"]
    record = env.collect_environment()
    assert list(record)[-2:] == ["llama_cpp_system_info", "onnxruntime"]  # run.json's keys, in their place


def test_an_engine_not_installed_leaves_its_key_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # sys.modules[name] = None makes the module unimportable and find_spec answer None: "not installed".
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    facts = env.engine_environment()
    assert facts["llama_cpp_system_info"] is None and facts["onnxruntime"] is None


def test_a_backend_whose_probe_fails_costs_only_its_own_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.backends.base import Backend

    # No `name`: these classes do not register themselves; env reads them through the patched registry.
    class Broken(Backend):
        environment_keys = ("broken_engine",)

        @classmethod
        def environment(cls) -> dict[str, object] | None:
            raise OSError("libengine.so: cannot open shared object file")

    class Fine(Backend):
        environment_keys = ("fine_engine",)

        @classmethod
        def environment(cls) -> dict[str, object] | None:
            return {"fine_engine": {"version": "1.0"}}

    class Silent(Backend):
        pass  # the default: nothing to report, no key

    monkeypatch.setattr(env, "backends", lambda: {"broken": Broken, "fine": Fine, "silent": Silent})
    assert env.engine_environment() == {"broken_engine": None, "fine_engine": {"version": "1.0"}}
