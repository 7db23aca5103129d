"""`python -m harness.servers.llama_cpp_server_main --repack 0|1 <llama_cpp.server arguments>`.

llama-cpp-python's server builds its `Llama` from pydantic settings that have no field for llama.cpp's weight
repacking (`llama_model_params.use_extra_bufts`); on CPUs where the repacked kernels crash (see
harness.backends.llama_cpp_repack) the server must load with it off, as the in-process backend does. This
launcher sets the switch for every model the server loads, then hands the remaining arguments to
`llama_cpp.server`'s own entry point unchanged.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    repack = True
    if len(argv) >= 2 and argv[0] == "--repack":
        repack = argv[1] not in ("0", "false", "off", "no")
        argv = argv[2:]
    from harness.backends.llama_cpp_repack import crash_if_injected, fault_injected, model_params_repack

    if repack and fault_injected():
        # The self-check's fault-injection hook: die at the first evaluation, as the real crash does.
        import llama_cpp

        eval_original = llama_cpp.Llama.eval

        def eval_then_crash(self: object, tokens: object) -> None:
            crash_if_injected(True)
            eval_original(self, tokens)  # type: ignore[arg-type]

        llama_cpp.Llama.eval = eval_then_crash  # type: ignore[method-assign]
    from llama_cpp.server.__main__ import main as server_main

    sys.argv = ["llama_cpp.server", *argv]
    with model_params_repack(repack):  # for the server's whole life: it may load its model at any time
        server_main()


if __name__ == "__main__":
    main(sys.argv[1:])
