import os
import stat
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    """Path of an executable that behaves like llama-server (tests/backends/fake_llama_server.py);
    PIDs of the processes it starts land in ``tmp_path / "pids"``."""
    exe = tmp_path / "llama-server"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "fake_llama_server.py"}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    piddir = tmp_path / "pids"
    piddir.mkdir()
    monkeypatch.setenv("FAKE_PIDDIR", str(piddir))
    return exe


def started_pids(tmp_path) -> list[int]:
    return [int(p.stem) for p in (tmp_path / "pids").glob("*.pid")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by a parent that is not us) counts as stopped
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="session")
def lora_drafter(tiny_pair, tmp_path_factory):
    """A 'fine-tuned' tiny drafter: a LoRA with non-zero weights, merged by specfair's export."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from specfair.drafters.export import export_drafter

    base = AutoModelForCausalLM.from_pretrained(tiny_pair[1], dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("lora") / "drafter"
    export_drafter(peft, AutoTokenizer.from_pretrained(tiny_pair[1]), out, dtype="float32")
    return out

