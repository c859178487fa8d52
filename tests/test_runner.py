"""The course runner: executes notebooks headless, times them, and fails when one fails."""

import nbformat

from course_utils.core import runner


def _notebook(path, source):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_execute_records_status_time_and_memory(tmp_path):
    ok = runner.execute(_notebook(tmp_path / "01_ok.ipynb", "import os; x = bytearray(50_000_000); print(os.environ['COURSE_PROFILE'])"), tmp_path / "out", "ci", timeout=120)
    assert ok.status == "ok" and ok.seconds > 0 and ok.peak_rss_mb > 40
    executed = nbformat.read(tmp_path / "out" / "01_ok.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "ci"


def test_kernel_chatter_goes_to_a_log_not_the_terminal(tmp_path, capfd):
    source = "import os; os.write(2, b'kernel-side noise\\n'); print('cell output')"
    run = runner.execute(_notebook(tmp_path / "03_noise.ipynb", source), tmp_path / "out", "ci", timeout=120)
    assert run.status == "ok"
    captured = capfd.readouterr()
    assert "kernel-side noise" not in captured.out + captured.err
    assert "kernel-side noise" in (tmp_path / "out" / "03_noise.kernel.log").read_text()
    executed = nbformat.read(tmp_path / "out" / "03_noise.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "cell output"


def test_failure_is_reported_with_its_error(tmp_path):
    bad = runner.execute(_notebook(tmp_path / "02_bad.ipynb", "raise ValueError('broken on purpose')"), tmp_path / "out", "ci", timeout=120)
    assert bad.status == "failed" and "broken on purpose" in bad.error
    table = runner.format_table([bad])
    assert "failed" in table and "0/1" in table


def test_notebooks_are_found_in_order_and_filtered(tmp_path):
    for name in ("02_b.ipynb", "00_a.ipynb", "10_c.ipynb", "notes.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in runner.notebooks(tmp_path)] == ["00_a.ipynb", "02_b.ipynb", "10_c.ipynb"]
    assert [p.name for p in runner.notebooks(tmp_path, ["10"])] == ["10_c.ipynb"]


def test_unknown_profile_exits_with_message(capsys):
    assert runner.main(["--profile", "nope", "--only", "00"]) == 2
    assert "valid profiles" in capsys.readouterr().err


def test_the_offline_run_keeps_to_the_local_server_unless_told_otherwise():
    assert runner.offline_chat_backend("offline", {"OPENAI_API_KEY": "sk-live"}) == "local"
    assert runner.offline_chat_backend("offline", {"COURSE_LLM": " "}) == "local"
    assert runner.offline_chat_backend("offline", {"COURSE_LLM": "openai"}) is None  # asked for explicitly
    assert runner.offline_chat_backend("colab", {}) is None  # the GPU profiles choose as the notebooks do
