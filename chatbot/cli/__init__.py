"""The `chatbot` command: a thin click layer over the library; user errors become one line."""

from __future__ import annotations

import sys

import click

from chatbot import __version__
from chatbot.errors import ChatbotError


class Group(click.Group):
    """A click group that turns the project's errors into one line and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ChatbotError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chatbot")
def cli() -> None:
    """A chatbot that learns to talk from real conversations.

    Start with `chatbot ingest FILE...` to turn subtitles, novels or dialogue sets into
    conversations, then `chatbot corpus stats` to see what you have.
    """


def _register() -> None:
    from chatbot.cli.chat import chat
    from chatbot.cli.corpus import corpus, ingest
    from chatbot.cli.evaluate import eval_command, explain
    from chatbot.cli.export import export
    from chatbot.cli.serve import serve
    from chatbot.cli.train import train
    from chatbot.cli.transcripts import transcripts

    cli.add_command(ingest)
    cli.add_command(corpus)
    cli.add_command(train)
    cli.add_command(transcripts)
    cli.add_command(chat)
    cli.add_command(eval_command)
    cli.add_command(explain)
    cli.add_command(serve)
    cli.add_command(export)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="chatbot")
