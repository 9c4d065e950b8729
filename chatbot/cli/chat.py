"""`chatbot chat`: talk with a model in the terminal, or line by line over a pipe."""

from __future__ import annotations

from pathlib import Path

import click

from chatbot.cli.options import decode_options, rerank_options, rerank_overrides
from chatbot.cli.transcripts import transcripts_option


@click.command()
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Model directory (default: the built-in model).")
@transcripts_option
@decode_options
@rerank_options
@click.option("--continue", "continue_latest", is_flag=True,
              help="Resume the latest conversation (its context is rebuilt from the "
              "transcript).")
@click.option("--conversation", "conversation_id", type=int, default=None, metavar="ID",
              help="Resume conversation ID (see `chatbot transcripts list`).")
def chat(model_dir, transcripts_path, method, beam_size, temperature, top_k, top_p,
         reverse_model, rerank, continue_latest, conversation_id):
    """Chat with a model; every turn is kept in the transcripts database.

    \b
    Example:
        chatbot chat --model models/mine
        chatbot chat --model models/mine --decode sample --temperature 0.8 --top-p 0.9
        chatbot chat --model models/mine --continue
        chatbot chat --model models/mine --reverse-model models/mine-reverse
        printf 'hello\\nhow are you?\\n' | chatbot chat --model models/mine

    In a terminal: Enter sends, Esc-Enter adds a line, Ctrl-C clears the line or stops a
    reply, Ctrl-D or /quit leaves; /help lists the commands (/reset, /retry, /set,
    /rate, /history...). The conversation's context is kept from turn to turn; /reset
    starts a new conversation. When stdin is not a terminal, each line is a turn and its
    reply is one line on stdout, so replies line up with the input: a blank line gets an
    empty line; /commands print none (notices go to stderr).

    --reverse-model DIR reranks each reply's candidates by MMI (a reply likely given the
    turn, from which the reverse model can tell the turn): fewer generic replies;
    /set rerank off|mmi|pmi and rerank_lambda, rerank_gamma, rerank_n tune it.
    """
    from chatbot.chat.app import run_chat

    given = {"method": method, "beam_size": beam_size, "temperature": temperature,
             "top_k": top_k, "top_p": top_p}
    given = {**{k: v for k, v in given.items() if v is not None},
             **rerank_overrides(rerank, reverse_model)}
    raise SystemExit(run_chat(model_dir, transcripts_path, given,
                              reverse_model=reverse_model,
                              continue_latest=continue_latest,
                              conversation_id=conversation_id))
