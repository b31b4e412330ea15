"""Assets assembled by local bundling carry the shared code of the checkout, without Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdk_constructs.bundling import Copy, LocalCopy

ROOT = Path(__file__).resolve().parents[2]


def asset_folder(synthesized, s3_url_or_key: str) -> Path:
    """The staged asset folder of an S3 key or URL (``<hash>.zip`` -> ``asset.<hash>``)."""
    file_hash = s3_url_or_key.rsplit("/", 1)[-1].split(".", 1)[0]
    folder = synthesized.outdir / f"asset.{file_hash}"
    assert folder.is_dir(), f"no staged asset {folder}"
    return folder


def core_modules() -> list[str]:
    return sorted(p.name for p in (ROOT / "modelwerk" / "core").glob("*.py"))


@pytest.mark.slow
def test_ingest_asset_holds_the_function_folder_and_modelwerk_core(synthesized, dev_data_lake):
    (function,) = dev_data_lake.find_resources("AWS::Lambda::Function").values()
    folder = asset_folder(synthesized, function["Properties"]["Code"]["S3Key"])
    assert sorted(p.name for p in (folder / "modelwerk" / "core").glob("*.py")) == core_modules()
    for source in (ROOT / "lambdas" / "ingest").glob("*.py"):
        assert (folder / source.name).read_bytes() == source.read_bytes()
    assert not (folder / "modelwerk" / "__init__.py").exists(), "modelwerk stays a namespace package in the function"


@pytest.mark.slow
def test_preparation_library_holds_the_job_modules_and_a_package_marker(synthesized, dev_data_lake):
    job = next(iter(dev_data_lake.find_resources("AWS::Glue::Job").values()))
    folder = asset_folder(synthesized, job["Properties"]["DefaultArguments"]["--extra-py-files"])
    for source in (ROOT / "glue_jobs" / "prepare_curated").glob("*.py"):
        assert (folder / source.name).is_file()
    assert sorted(p.name for p in (folder / "modelwerk" / "core").glob("*.py")) == core_modules()
    assert (folder / "modelwerk" / "naming.py").is_file()
    assert (folder / "modelwerk" / "__init__.py").is_file(), "zip assets have no directory entries"


def test_local_copy_refuses_a_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        LocalCopy(copies=[Copy(tmp_path / "absent")])


def test_local_copy_copies_folders_files_and_generated_files(tmp_path):
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "a.py").write_text("A = 1\n")
    (source / "pkg" / "__pycache__").mkdir()
    (source / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"")
    (source / "single.py").write_text("B = 2\n")
    out = tmp_path / "out"
    out.mkdir()
    bundler = LocalCopy(
        copies=[Copy(source / "pkg", "lib/pkg"), Copy(source / "single.py")],
        files={"lib/__init__.py": ""},
    )
    assert bundler.try_bundle(str(out)) is True
    assert (out / "lib" / "pkg" / "a.py").read_text() == "A = 1\n"
    assert not (out / "lib" / "pkg" / "__pycache__").exists()
    assert (out / "single.py").read_text() == "B = 2\n"
    assert (out / "lib" / "__init__.py").exists()
