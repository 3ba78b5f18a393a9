"""Variants of torch.export.export: what the test receives has been through a transformation."""

from __future__ import annotations

import inspect
import io
import os
from typing import Any

from tools.matrix.variants import Call, CheckedPrograms, Variant, scratch_dir

EXPORT = "torch.export.export"


def _bound(call: Call) -> inspect.BoundArguments:
    bound = inspect.signature(call.fn).bind(*call.args, **call.kwargs)
    bound.apply_defaults()
    return bound


class _ProgramVariant(Variant):
    """Returns another ExportedProgram; the differential check runs both programs' `.module()` on the
    export call's example inputs (`args`, `kwargs`)."""

    entry_points = (EXPORT,)
    checks_numerics = True

    def check_programs(self, call: Call, result: Any, transformed: Any) -> CheckedPrograms:
        bound = _bound(call)
        args, kwargs = bound.arguments.get("args") or (), bound.arguments.get("kwargs") or {}
        return result.module(), transformed.module(), tuple(args), dict(kwargs), (result, transformed)


class CppSerdes(_ProgramVariant):
    """Serialize, deserialize and re-serialize through the C++ implementation, then deserialize."""

    def after(self, call: Call, result: Any) -> Any:
        import torch
        from torch._export.serde.serialize import SerializedArtifact, deserialize, serialize

        artifact = serialize(result)
        payload = artifact.exported_program
        self.keep_payload("exported_program.json", payload, "the program serialized by Python (torch._export.serde.serialize)")
        cpp_program = torch._C._export.deserialize_exported_program(payload.decode() if isinstance(payload, bytes) else payload)
        reserialized = torch._C._export.serialize_exported_program(cpp_program)
        if isinstance(reserialized, str):
            reserialized = reserialized.encode()
        self.keep_payload("cpp_reserialized.json", reserialized, "the program deserialized and serialized again by C++")
        return deserialize(SerializedArtifact(reserialized, artifact.state_dict, artifact.constants, artifact.example_inputs))


class Retrace(_ProgramVariant):
    """Export the exported program's `.module()` again with the same inputs, shapes and options."""

    def after(self, call: Call, result: Any) -> Any:
        bound = _bound(call)
        bound.arguments["mod"] = result.module()
        return call.fn(*bound.args, **bound.kwargs)


class Package(_ProgramVariant):
    """Write the program into a .pt2 package archive on disk and load it back."""

    def after(self, call: Call, result: Any) -> Any:
        from torch.export.pt2_archive._package import load_pt2, package_pt2

        path = os.path.join(scratch_dir(), "program.pt2")
        package_pt2(path, exported_programs={"model": result})
        with open(path, "rb") as archive:
            self.keep_payload("program.pt2", archive.read(), "the .pt2 package archive written by package_pt2")
        loaded = load_pt2(path).exported_programs
        if list(loaded) != ["model"]:
            raise ValueError(f"the archive holds programs {sorted(loaded)}, expected ['model']")
        return loaded["model"]


class Serdes(_ProgramVariant):
    """torch.export.save / torch.export.load round trip (in memory)."""

    def after(self, call: Call, result: Any) -> Any:
        import torch

        buffer = io.BytesIO()
        torch.export.save(result, buffer)
        self.keep_payload("saved.pt2", buffer.getvalue(), "the archive written by torch.export.save")
        buffer.seek(0)
        return torch.export.load(buffer)


class Strict(Variant):
    """Trace with strict=True (TorchDynamo) instead of the default non-strict tracing.

    Not differentially checked: it returns the only program there is (checking it would mean a
    second, non-strict export, which is the base variant's job)."""

    entry_points = (EXPORT,)

    def before(self, call: Call) -> Call:
        try:
            bound = _bound(call)
        except TypeError:
            return call  # arguments export() itself rejects: it raises its own TypeError
        bound.arguments["strict"] = True
        return Call(call.entry, call.fn, bound.args, bound.kwargs)


class RunDecomp(_ProgramVariant):
    """Return `ep.run_decompositions()` (the default core ATen decomposition table)."""

    def after(self, call: Call, result: Any) -> Any:
        return result.run_decompositions()
