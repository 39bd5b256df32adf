import pytest

from skipperdask.cli import main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "watch", "demo", "simulate", "inspect", "report"):
        assert command in out


def test_simulate_noise_is_the_noise_of_every_image(tmp_path, capsys):
    """Issue 14: ``--noise 3`` ramped the noise 3.0 -> 3.6 over the images."""
    from skipperdask.simulate import read_truth

    small = ["--nrows", "4", "--ncols", "8", "--nskips", "2"]
    assert main(["simulate", str(tmp_path / "flat"), "-n", "3", "--noise", "3", *small]) == 0
    assert main(["simulate", str(tmp_path / "ramp"), "-n", "3", "--noise", "3",
                 "--noise-ramp", "0.5", *small]) == 0
    capsys.readouterr()
    flat = [read_truth(tmp_path / "flat" / f"Img_{i}.fits").read_noise for i in (1, 2, 3)]
    ramp = [read_truth(tmp_path / "ramp" / f"Img_{i}.fits").read_noise for i in (1, 2, 3)]
    assert flat == [3.0, 3.0, 3.0]
    assert ramp == pytest.approx([3.0, 3.75, 4.5])


def test_an_error_is_one_line_and_verbose_adds_its_traceback(tmp_path, capsys):
    missing = tmp_path / "nowhere.zarr"
    assert main(["report", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"skipperdask report: {missing}: no such catalogue"
    assert main(["-v", "report", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("no such catalogue")
