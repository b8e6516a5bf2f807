"""Rendering MIDI with Debian's FluidSynth command line and a General MIDI soundfont.

FluidSynth runs with chorus and reverb off and writes 32-bit float, which skips its dithering: the same MIDI
file then gives byte-identical audio on every run. Samples are loaded on demand, so a call costs ~0.1 s even
with the 148 MB FluidR3 soundfont."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from marblekit.synth.midi import Part, write_midi

SAMPLE_RATE = 44100
#: soundfonts looked for, best first, with the Debian package that installs each
SOUNDFONTS: tuple[tuple[Path, str], ...] = (
    (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), "fluid-soundfont-gm"),
    (Path("/usr/share/sounds/sf2/TimGM6mb.sf2"), "timgm6mb-soundfont"),
)
_SETTINGS = ("synth.chorus.active=0", "synth.reverb.active=0", "synth.dynamic-sample-loading=1",
             "synth.cpu-cores=1", "synth.polyphony=512")
#: FluidSynth's master gain; low enough that a six-part mix stays well inside float range before normalising
_GAIN = 0.3


class SynthToolMissing(FileNotFoundError):
    """FluidSynth or a soundfont is not installed; the message names the Debian package to install."""


@dataclass(frozen=True)
class Renderer:
    """A FluidSynth executable and the soundfont it plays."""

    fluidsynth: Path
    soundfont: Path

    @classmethod
    def locate(cls, soundfont: Path | None = None) -> "Renderer":
        """Find ``fluidsynth`` on PATH and ``soundfont`` (or the first installed GM soundfont)."""
        binary = shutil.which("fluidsynth")
        if binary is None:
            raise SynthToolMissing("the fluidsynth command is not installed: apt-get install fluidsynth "
                                   "(scripts/install.sh installs it with a soundfont)")
        if soundfont is not None:
            if not soundfont.is_file():
                raise SynthToolMissing(f"soundfont {soundfont} does not exist: give an .sf2 file, or install "
                                       "a General MIDI soundfont with apt-get install fluid-soundfont-gm")
            return cls(Path(binary), soundfont)
        for path, _ in SOUNDFONTS:
            if path.is_file():
                return cls(Path(binary), path)
        looked = ", ".join(f"{path} (package {package})" for path, package in SOUNDFONTS)
        raise SynthToolMissing(f"no General MIDI soundfont found; looked for {looked}: "
                               "apt-get install fluid-soundfont-gm, or pass --soundfont FILE.sf2")

    def render(self, parts: list[Part], seconds: float) -> np.ndarray:
        """Mono float32 audio of ``parts``, exactly ``seconds`` long at 44.1 kHz (release tails cut, silence padded)."""
        with tempfile.TemporaryDirectory(prefix="marblekit-synth-") as tmp:
            midi, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
            write_midi(midi, parts)
            command = [str(self.fluidsynth), "-ni", "-q", "-F", str(wav), "-T", "wav", "-O", "float",
                       "-r", str(SAMPLE_RATE), "-g", str(_GAIN)]
            for setting in _SETTINGS:
                command += ["-o", setting]
            done = subprocess.run(command + [str(self.soundfont), str(midi)], capture_output=True, text=True)
            if done.returncode != 0 or not wav.is_file():
                raise RuntimeError(f"fluidsynth failed ({done.returncode}) on {self.soundfont}: "
                                   f"{(done.stderr or done.stdout).strip()[-500:]}")
            audio, rate = soundfile.read(wav, dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            raise RuntimeError(f"fluidsynth wrote {rate} Hz instead of {SAMPLE_RATE} Hz")
        mono = audio.mean(axis=1)
        length = round(seconds * SAMPLE_RATE)
        return np.pad(mono[:length], (0, max(0, length - len(mono)))).astype(np.float32)


def missing_renderer() -> str | None:
    """Why the synthetic suite cannot be rendered on this machine (for a test's skip reason), or None."""
    try:
        Renderer.locate()
    except SynthToolMissing as err:
        return str(err)
    return None
