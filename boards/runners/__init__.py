"""Runners: one interface (`base.Runner`) over QEMU, Unicorn, Renode and real boards over serial.

`make_runner(target, name)` picks and configures one for a build target; a runner builds
nothing, it runs an ELF and hands back the console text for `edgekit.boards.report`.
"""
