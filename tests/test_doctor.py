import subprocess
import sys

from course_utils.core import config, doctor

KEY = "sk-proj-" + "d" * 40


def test_report_is_masked_and_passes_here(clean_env):
    clean_env.setenv("OPENAI_API_KEY", KEY)
    rows = doctor.checks(config.get_profile("ci"), try_server=False)
    text = doctor.report(rows)
    assert KEY not in text and "sk-p...dddd" in text
    assert all(ok for _, _, ok in rows), text
    names = [name for name, _, _ in rows]
    for expected in ("python", "torch", "transformers", "device", "bitsandbytes", "chat model (SmolLM2 GGUF)", "memory", "disk",
                     "model qwen2.5-coder-1.5b", "model qwen2.5-coder-0.5b", "local server program"):
        assert expected in names


def test_broken_setup_exits_non_zero(clean_env):
    clean_env.setenv("OPENAI_API_KEY", " sk-with-a-space")
    result = subprocess.run([sys.executable, "-m", "course_utils.core.doctor", "--no-server", "--profile", "ci"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "broken: OPENAI_API_KEY" in result.stdout


def test_unknown_profile(clean_env):
    assert doctor.main(["--profile", "nope", "--no-server"]) == 2


def test_server_check_answers(clean_env):
    from course_utils.chat import llm

    try:
        name, detail, ok = doctor.server_check(config.get_profile("ci"))
    finally:
        llm.stop_local_server()
    assert ok, detail
    assert "answered in" in detail


def test_the_profile_can_come_from_dotenv(clean_env, tmp_path, capsys):
    from course_utils.core import secrets

    (tmp_path / ".env").write_text("COURSE_PROFILE=no-such-profile\n")
    clean_env.chdir(tmp_path)
    clean_env.setattr(secrets, "_LOADED", False)
    clean_env.delenv("COURSE_PROFILE")  # restored after the test
    assert doctor.main(["--no-server"]) == 2  # .env was read before the profile was chosen
    assert "unknown profile 'no-such-profile'" in capsys.readouterr().out


def test_unmet_pins_are_named_with_the_command_that_fixes_them():
    from packaging.requirements import Requirement

    cpu = config.pinned_requirements("cpu")
    assert "torch" in cpu and "jupyterlab" in cpu and "pytest" not in cpu  # the dev extra is not the course's
    assert "torch" not in config.pinned_requirements("colab")  # Colab keeps its own CUDA torch
    assert doctor.requirement_problems({name: cpu[name] for name in ("torch", "openai")}) == []
    problems = dict(doctor.requirement_problems({"a": Requirement("surely-not-installed-pkg>=1"), "b": Requirement("pytest<1")}))
    assert problems["surely-not-installed-pkg"] == "missing; fix it with: pip install 'surely-not-installed-pkg>=1' (or make setup)"
    assert problems["pytest"].endswith("is outside the course's pin <1; fix it with: pip install 'pytest<1'")
