"""Variants of torch._dynamo.export, whose result is a function returning an ExportResult."""

from __future__ import annotations

import functools
import io
from typing import Any

from tools.matrix.variants import Call, Variant

DYNAMO_EXPORT = "torch._dynamo.export"


class _ExportResultVariant(Variant):
    """Transforms the ExportResult that the function returned by torch._dynamo.export produces.

    The differential check runs when that function is called: the program is its GraphModule, before
    and after `transform_graph`, run on the inputs the function was called with."""

    entry_points = (DYNAMO_EXPORT,)
    checks_numerics = True

    def after(self, call: Call, result: Any) -> Any:
        @functools.wraps(result)
        def export_and_transform(*args: Any, **kwargs: Any) -> Any:
            exported = result(*args, **kwargs)
            with self.transforming(call.entry, program=exported.graph_module) as transformed_into:
                transformed = self.transform_graph(call, exported.graph_module, args, kwargs)
                transformed_into(transformed)
            if self.checks_numerics:
                self.check(call.entry, lambda: (exported.graph_module, transformed, args, kwargs, ()))
            return exported._replace(graph_module=transformed)

        return export_and_transform

    def check_result(self, call: Call, result: Any, transformed: Any) -> None:
        """Nothing to check yet: the programs exist once the returned function is called."""

    def evidence_program(self, result: Any) -> None:
        """None: the program exists once the returned function is called (export_and_transform)."""
        return None

    def transform_graph(self, call: Call, graph_module: Any, args: tuple, kwargs: dict) -> Any:
        """`call` is the torch._dynamo.export(...) call (its options); args/kwargs the example inputs."""
        raise NotImplementedError


class DynamoPackage(_ExportResultVariant):
    """Round-trip the exported GraphModule through torch.package (save_pickle / load_pickle)."""

    def transform_graph(self, call: Call, graph_module: Any, args: tuple, kwargs: dict) -> Any:
        from torch.package import PackageExporter, PackageImporter, sys_importer

        buffer = io.BytesIO()
        with PackageExporter(buffer, importer=sys_importer) as exporter:
            exporter.extern(["torch", "torch.**", "builtins", "math", "operator", "sympy", "sympy.**"])
            exporter.intern("**", allow_empty=True)
            exporter.save_pickle("graph", "module.pkl", graph_module)
        self.keep_payload("package.zip", buffer.getvalue(), "the torch.package archive holding the pickled GraphModule")
        buffer.seek(0)
        return PackageImporter(buffer).load_pickle("graph", "module.pkl")


class DynamoReexport(_ExportResultVariant):
    """Export the dynamo GraphModule again with torch.export.export and use its `.module()`.

    The re-export keeps the dynamo call's dynamism: its `dynamic_shapes` when given; otherwise, under
    dynamo's defaults (symbolic tracing, assume_static_by_default=False), every dim of every
    positional tensor input is Dim.AUTO.
    """

    def transform_graph(self, call: Call, graph_module: Any, args: tuple, kwargs: dict) -> Any:
        import torch
        from torch.utils import _pytree as pytree

        export = getattr(torch.export.export, "__matrix_original__", torch.export.export)
        options = call.kwargs
        dynamic_shapes = options.get("dynamic_shapes")
        automatic = options.get("tracing_mode", "symbolic") == "symbolic" and not options.get("assume_static_by_default", False)
        if dynamic_shapes is None and automatic and not kwargs:
            auto = torch.export.Dim.AUTO
            dynamic_shapes = tuple(
                pytree.tree_map(lambda x: {i: auto for i in range(x.dim())} if isinstance(x, torch.Tensor) else None, a) for a in args
            )
        return export(graph_module, tuple(args), dict(kwargs) or None, dynamic_shapes=dynamic_shapes).module()
