"""Variants of torch._dynamo.export, whose result is a function returning an ExportResult."""

from __future__ import annotations

import functools
import io
from typing import Any

from tools.matrix.variants import Call, Variant

DYNAMO_EXPORT = "torch._dynamo.export"


class _ExportResultVariant(Variant):
    """Transforms the ExportResult that the function returned by torch._dynamo.export produces."""

    entry_points = (DYNAMO_EXPORT,)

    def after(self, call: Call, result: Any) -> Any:
        @functools.wraps(result)
        def export_and_transform(*args: Any, **kwargs: Any) -> Any:
            exported = result(*args, **kwargs)
            with self.transforming(call.entry):
                return exported._replace(graph_module=self.transform_graph(exported.graph_module, args, kwargs))

        return export_and_transform

    def transform_graph(self, graph_module: Any, args: tuple, kwargs: dict) -> Any:
        raise NotImplementedError


class DynamoPackage(_ExportResultVariant):
    """Round-trip the exported GraphModule through torch.package (save_pickle / load_pickle)."""

    def transform_graph(self, graph_module: Any, args: tuple, kwargs: dict) -> Any:
        from torch.package import PackageExporter, PackageImporter, sys_importer

        buffer = io.BytesIO()
        with PackageExporter(buffer, importer=sys_importer) as exporter:
            exporter.extern(["torch", "torch.**", "builtins", "math", "operator", "sympy", "sympy.**"])
            exporter.intern("**", allow_empty=True)
            exporter.save_pickle("graph", "module.pkl", graph_module)
        buffer.seek(0)
        return PackageImporter(buffer).load_pickle("graph", "module.pkl")


class DynamoReexport(_ExportResultVariant):
    """Export the dynamo GraphModule again with torch.export.export and use its `.module()`."""

    def transform_graph(self, graph_module: Any, args: tuple, kwargs: dict) -> Any:
        import torch

        export = getattr(torch.export.export, "__matrix_original__", torch.export.export)
        return export(graph_module, tuple(args), dict(kwargs) or None).module()
