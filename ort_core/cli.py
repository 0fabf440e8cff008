"""The ``ort`` command. ``ort bootstrap`` skips argparse: it is the cold-start path."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from ort_core.plugins import Hooks


INSPECT_HELP = (
    "open the Node or Deno worker's inspector on 127.0.0.1:PORT (default 9229) for a "
    "debugger (sets ORT_INSPECT)"
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["bootstrap"]:
        from ort_core.bootstrap import main as bootstrap

        return bootstrap()
    return _run_command(args)


def _run_command(args: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="ort",
        description="ORT, the open runtime for serverless functions: one runtime, any "
        "language, plugins around every invocation.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser(
        "bootstrap",
        help="run the Lambda Runtime API loop (what Lambda's bootstrap executes)",
        description="Serve invocations from the Lambda Runtime API at "
        "$AWS_LAMBDA_RUNTIME_API with the handler in $_HANDLER under $LAMBDA_TASK_ROOT.",
    )

    emulate = commands.add_parser(
        "emulate",
        help="run a runtime behind a local Lambda (no Docker)",
        description="Serve AWS's emulator invoke endpoint "
        "(POST /2015-03-31/functions/function/invocations) and run CMD as the runtime, "
        "with AWS_LAMBDA_RUNTIME_API set. CMD defaults to ORT's own bootstrap; any "
        "runtime client works, e.g. `ort emulate -- python -m awslambdaric app.handler`.",
    )
    emulate.add_argument("--port", type=int, default=8080, help="invoke port (default 8080)")
    emulate.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    emulate.add_argument("--handler", help="sets _HANDLER for the runtime")
    emulate.add_argument("--language", help="sets ORT_LANGUAGE (python, node, deno...)")
    emulate.add_argument(
        "--timeout",
        type=float,
        help="function timeout in seconds (sets AWS_LAMBDA_FUNCTION_TIMEOUT; default 300)",
    )
    emulate.add_argument(
        "--inspect", nargs="?", const=9229, type=int, metavar="PORT", help=INSPECT_HELP
    )
    emulate.add_argument("runtime", nargs=argparse.REMAINDER, metavar="-- CMD ...")

    invoke = commands.add_parser(
        "invoke",
        help="invoke a handler once, locally, and print its answer",
        description="Run the handler once through ORT's pipeline and print the response "
        "on stdout (the function's own output goes to stderr). Exits 1 on a function "
        "error, printing Lambda's error JSON.",
    )
    invoke.add_argument("--handler", required=True, help="e.g. app.handler")
    invoke.add_argument(
        "--language", help="python, node, deno... (default $ORT_LANGUAGE, else found by file)"
    )
    invoke.add_argument(
        "--event", default=None, metavar="FILE", help="JSON event file, '-' for stdin (default {})"
    )
    invoke.add_argument(
        "--timeout", type=float, help="seconds (default $AWS_LAMBDA_FUNCTION_TIMEOUT or 300)"
    )

    serve = commands.add_parser(
        "serve",
        help="serve the function over HTTP (Scaleway-compatible; needs ort-core[serve])",
        description="Turn each HTTP request into an event (Scaleway's) and run it through "
        "ORT's pipeline on a pool of workers: docs/gateway.md.",
    )
    serve.add_argument("--handler", help="e.g. app.handler (default $_HANDLER or SCW_HANDLER_*)")
    serve.add_argument("--language", help="python, node, deno... (default $ORT_LANGUAGE)")
    serve.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default $PORT or 8080)")
    serve.add_argument(
        "--concurrency", type=int, help="workers (default $ORT_CONCURRENCY or the CPU count)"
    )
    serve.add_argument(
        "--timeout", type=float, help="seconds (default $AWS_LAMBDA_FUNCTION_TIMEOUT or 300)"
    )
    serve.add_argument(
        "--inspect",
        nargs="?",
        const=9229,
        type=int,
        metavar="PORT",
        help=INSPECT_HELP + "; one worker only (concurrency 1), as only one can own the port",
    )

    plugins = commands.add_parser(
        "plugins",
        help="list loaded plugins, their versions and hooks",
        description="List the plugins ORT loads at cold start, with the environment's "
        "ORT_PLUGINS, ORT_DISABLE_PLUGINS and ORT_PLUGIN_MODULES applied.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also each plugin's import time, and every hook's implementations in call order",
    )

    new = commands.add_parser(
        "new",
        help="start a plugin or a function from a template, with its tests",
        description="Write a plugin distribution or a function skeleton into a new directory; "
        "its tests use ORT's testing kit and pass as generated: docs/writing-plugins.md.",
    )
    new_commands = new.add_subparsers(dest="new_command", metavar="WHAT", required=True)
    new_plugin = new_commands.add_parser(
        "plugin",
        help="a plugin distribution: pyproject with the `ort` entry point, hooks, tests, README",
        description="NAME `auth-gate` gives the distribution ort-auth-gate, its module "
        "ort_auth_gate and the entry point auth_gate.",
    )
    new_plugin.add_argument("name", metavar="NAME")
    new_plugin.add_argument(
        "-o", "--output", metavar="DIR", help="where to write it (default ./ort-NAME)"
    )
    new_function = new_commands.add_parser(
        "function",
        help="a function: its handler, a sample event and a test",
        description="A handler answering a greeting, event.json and tests/ (ORT's testing kit).",
    )
    new_function.add_argument("name", metavar="NAME", nargs="?", help="default hello-LANGUAGE")
    new_function.add_argument("-l", "--language", required=True, help="python, node or deno")
    new_function.add_argument(
        "-o", "--output", metavar="DIR", help="where to write it (default ./NAME)"
    )

    layer = commands.add_parser(
        "layer",
        help="build an AWS Lambda layer with ORT, plugins and middlewares",
        description="Lambda layers of ORT: docs/deploy.md.",
    )
    layer_commands = layer.add_subparsers(dest="layer_command", metavar="COMMAND", required=True)
    layer_build = layer_commands.add_parser(
        "build",
        help="build the layer zip",
        description="Build a zip in Lambda's layer layout (unpacked in /opt): bootstrap and "
        "ort-wrapper at the root, ort-core and the plugins under python/, their Node or Deno "
        "binaries under bin/, middlewares under middlewares/, and ort-plugins.json, the plugin "
        "manifest cold start reads instead of scanning. Plugins installed from a local source "
        "(editable or not) are built from it; others come from the package index at the "
        "installed version.",
    )
    layer_build.add_argument(
        "--plugins",
        default="ort-python",
        help="comma-separated distributions, directories or wheels, with [extras] if need be "
        "(default ort-python; ort-core is always in). A language plugin's binary extra comes "
        "along: ort-node brings node, ort-deno brings deno",
    )
    layer_build.add_argument(
        "--middlewares", metavar="DIR", help="a directory of executable middlewares to include"
    )
    layer_build.add_argument(
        "--platform", choices=("x86_64", "arm64"), default="x86_64", help="default x86_64"
    )
    layer_build.add_argument(
        "--python", default="3.12", help="the target CPython, as Lambda's runtime (default 3.12)"
    )
    layer_build.add_argument(
        "--glibc",
        help="newest glibc the wheels may need (default 2.34, Amazon Linux 2023, for Python "
        "3.12 and later; 2.26, Amazon Linux 2, before)",
    )
    layer_build.add_argument(
        "--wheels",
        metavar="DIR",
        help="keep the wheels built or downloaded here and reuse them in later builds (say, "
        "for another platform); empty it after changing a local source",
    )
    layer_build.add_argument(
        "-o", "--output", default="ort-layer.zip", help="the zip to write (default ort-layer.zip)"
    )

    options = parser.parse_args(args)
    if options.command == "bootstrap":
        from ort_core.bootstrap import main as bootstrap

        return bootstrap()
    if options.command == "emulate":
        return _emulate(options)
    if options.command == "invoke":
        return _invoke(options)
    if options.command == "serve":
        return _serve(options)
    if options.command == "layer":
        return _layer_build(options)
    if options.command == "new":
        return _new(options)
    return _plugins(options)


def _serve(options: argparse.Namespace) -> int:
    import os

    from ort_core.config import with_lambda_defaults

    concurrency = options.concurrency
    if options.inspect is not None:
        # The workers read it from ORT's environment; only one of them can own the port.
        os.environ["ORT_INSPECT"] = f"127.0.0.1:{options.inspect}"
        if concurrency not in (None, 1):
            print("ort serve: --inspect runs one worker (concurrency 1)", file=sys.stderr)
        concurrency = 1
    env = with_lambda_defaults(os.environ)
    if options.language:
        env["ORT_LANGUAGE"] = options.language
    try:
        from ort_core.gateway.server import serve
    except ImportError as exc:
        print(f"ort serve: {exc.name} is missing: pip install 'ort-core[serve]'", file=sys.stderr)
        return 1
    return serve(env, options.handler, options.host, options.port, concurrency, options.timeout)


def _emulate(options: argparse.Namespace) -> int:
    import os
    import signal

    from ort_core.emulator import Emulator

    runtime = options.runtime[1:] if options.runtime[:1] == ["--"] else options.runtime
    command = runtime or [sys.executable, "-m", "ort_core", "bootstrap"]
    env = dict(os.environ)
    if options.handler:
        env["_HANDLER"] = options.handler
    if options.language:
        env["ORT_LANGUAGE"] = options.language
    if options.timeout:
        env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = str(options.timeout)
    if options.inspect is not None:
        env["ORT_INSPECT"] = f"127.0.0.1:{options.inspect}"  # read by the Node and Deno plugins
    emulator = Emulator(command, env, host=options.host, port=options.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(
        f"ort emulate: POST http://{options.host}:{emulator.port}"
        "/2015-03-31/functions/function/invocations  (runtime: " + " ".join(command) + ")",
        file=sys.stderr,
        flush=True,
    )
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _invoke(options: argparse.Namespace) -> int:
    import json
    import os
    import time
    import uuid

    from ort_core.config import FunctionConfig, with_lambda_defaults
    from ort_core.context import Context
    from ort_core.errors import FunctionError
    from ort_core.logs import set_request_id, setup_function_logging
    from ort_core.startup import start_function

    if options.event == "-":
        body = sys.stdin.buffer.read()
    elif options.event:
        with open(options.event, "rb") as event_file:
            body = event_file.read()
    else:
        body = b"{}"
    output, sys.stdout = sys.stdout, sys.stderr  # the function's prints must not mix in
    env = with_lambda_defaults(os.environ)
    if options.language:
        env["ORT_LANGUAGE"] = options.language
    setup_function_logging(env)
    config = FunctionConfig.from_environ(env, handler=options.handler)
    request_id = str(uuid.uuid4())
    set_request_id(request_id)

    def report_timeout(error: FunctionError, context: Context) -> None:
        print(json.dumps(error.to_dict(context.aws_request_id)), file=output, flush=True)
        pipeline.close()
        os._exit(1)

    try:
        pipeline = start_function(config, env, on_expiry=report_timeout)
    except FunctionError as error:
        print(json.dumps(error.to_dict(request_id)), file=output, flush=True)
        return 1
    timeout = options.timeout or float(env["AWS_LAMBDA_FUNCTION_TIMEOUT"])
    context = Context(request_id, int(time.time() * 1000 + timeout * 1000), config)
    try:
        answer = pipeline.invoke(body, context)
        output.buffer.write(answer + b"\n")
        output.flush()
        return 0
    except FunctionError as error:
        print(json.dumps(error.to_dict(request_id)), file=output, flush=True)
        return 1
    finally:
        pipeline.answered(context)
        pipeline.close()


def _layer_build(options: argparse.Namespace) -> int:
    import re

    from ort_core.layer import LayerError, Options, build

    layer_options = Options(  # commas inside [extras] do not separate plugins
        plugins=[name for name in re.split(r",(?![^\[]*\])", options.plugins) if name.strip()],
        middlewares=options.middlewares,
        platform=options.platform,
        python=options.python,
        output=options.output,
        glibc=options.glibc,
        wheels=options.wheels,
    )
    try:
        result = build(layer_options, say=lambda line: print(line, flush=True))
    except LayerError as error:
        print(f"ort layer build: error: {error}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"ort layer build: warning: {warning}", file=sys.stderr)
    return 0


def _plugins(options: argparse.Namespace) -> int:
    import json

    from ort_core.plugins import PluginLoadError, load_plugins

    try:
        hooks = load_plugins()
    except PluginLoadError as exc:
        print(f"ort plugins: {exc}", file=sys.stderr)
        return 1
    infos = hooks.describe()
    order = _hook_order(hooks) if options.verbose else {}
    if options.json:
        listed = []
        for info in infos:
            entry = {key: getattr(info, key) for key in ("name", "distribution", "version")}
            entry["hooks"] = info.hooks
            if options.verbose:
                entry["import_ms"] = _round_ms(info.import_ms)
                entry["order"] = {
                    hook: position
                    for hook, impls in order.items()
                    for position, (plugin, _) in enumerate(impls, 1)
                    if plugin == info.name
                }
            listed.append(entry)
        print(json.dumps(listed, indent=2))
        return 0
    if not infos:
        print("no plugins loaded")
    for info in infos:
        where = " ".join(filter(None, (info.distribution, info.version))) or "(module)"
        imported = f"  import {info.import_ms:.2f} ms" if options.verbose else ""
        if options.verbose and info.import_ms is None:
            imported = "  (registered as an object)"
        print(f"{info.name}  {where}  hooks: {', '.join(info.hooks) or '-'}{imported}")
    if options.verbose:
        print("\nhook implementations, in call order:")
        for hook, impls in order.items():
            print(f"  {hook}" + ("" if impls else "  -"))
            for position, (plugin, flags) in enumerate(impls, 1):
                print(f"    {position}. {plugin}" + (f"  ({', '.join(flags)})" if flags else ""))
    return 0


def _hook_order(hooks: Hooks) -> dict[str, list[tuple[str, list[str]]]]:
    """Every hook, in the order of the contract, with (plugin, flags) in call order."""
    from ort_core import hookspecs

    names = [name for name, value in vars(hookspecs).items() if hasattr(value, "ort_spec")]
    ranked = set(hooks.ranked)
    order = {}
    for name in names:
        impls = []
        for impl in hooks.call_order(name):
            flags = [flag for flag in ("tryfirst", "trylast", "wrapper") if getattr(impl, flag)]
            if impl.hookwrapper:
                flags.append("hookwrapper")
            if impl.plugin_name in ranked and name != "launch_language":  # pluggy's order
                flags.append("ORT_PLUGIN_ORDER")
            impls.append((impl.plugin_name, flags))
        order[name] = impls
    return order


def _round_ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _new(options: argparse.Namespace) -> int:
    from ort_core.new import TemplateError, function_fields, generate, plugin_fields

    try:
        if options.new_command == "plugin":
            fields = plugin_fields(options.name)
            output = options.output or fields["distribution"]
            files = generate("plugin", output, fields)
            follow = f"cd {output} && pip install -e '.[test]' && pytest"
        else:
            language = options.language.lower()
            fields = function_fields(options.name or f"hello-{language}", language)
            output = options.output or fields["name"]
            files = generate(f"function/{language}", output, fields)
            follow = f"cd {output} && ort invoke --handler {fields['handler']} --event event.json"
    except TemplateError as error:
        print(f"ort new: {error}", file=sys.stderr)
        return 1
    for name in files:
        print(f"  {output}/{name}")
    print(f"next: {follow}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
