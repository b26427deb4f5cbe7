"""text_games: TextArena single-player games and Gymnasium text environments, played with one
``play`` tool; the reward is the game's own (ngym/interop/text_games.py, docs/interop.md)."""

from __future__ import annotations

from ngym.interop.text_games import TextGamesServer


class TextGamesResourcesServer(TextGamesServer):
    """Served as is; rows name the game (``textarena:<id>`` or ``gymnasium:<id>``) and its seed."""


if __name__ == "__main__":
    TextGamesResourcesServer.run_webserver()
