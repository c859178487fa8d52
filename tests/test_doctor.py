import subprocess
import sys

from course_utils import config, doctor

KEY = "sk-proj-" + "d" * 40


def test_report_is_masked_and_passes_here(clean_env):
    clean_env.setenv("OPENAI_API_KEY", KEY)
    rows = doctor.checks(config.get_profile("ci"), try_server=False)
    text = doctor.report(rows)
    assert KEY not in text and "sk-p...dddd" in text
    assert all(ok for _, _, ok in rows), text
    names = [name for name, _, _ in rows]
    for expected in ("python", "torch", "transformers", "device", "bitsandbytes", "chat model (SmolLM2 GGUF)"):
        assert expected in names


def test_broken_setup_exits_non_zero(clean_env):
    clean_env.setenv("OPENAI_API_KEY", " sk-with-a-space")
    result = subprocess.run([sys.executable, "-m", "course_utils.doctor", "--no-server", "--profile", "ci"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "broken: OPENAI_API_KEY" in result.stdout


def test_unknown_profile(clean_env):
    assert doctor.main(["--profile", "nope", "--no-server"]) == 2


def test_server_check_answers(clean_env):
    from course_utils import llm

    try:
        name, detail, ok = doctor.server_check(config.get_profile("ci"))
    finally:
        llm.stop_local_server()
    assert ok, detail
    assert "answered in" in detail
