#!/usr/bin/env bash
# A sample mod setup, shown through usvfs: the merged view, a conflict resolved
# by priority, and the real disk untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
USVFS="$PWD/target/release/usvfs"
D="$PWD/demo"
rm -rf "$D"
mkdir -p "$D/game/Data/textures" "$D/mods/BetterTextures/textures" "$D/mods/QuestMod/quests" \
         "$D/mods/QuestMod/textures" "$D/overwrite"
echo "vanilla sky"            > "$D/game/Data/textures/sky.dds"
echo "vanilla rock"           > "$D/game/Data/textures/rock.dds"
echo "[game] lod=1"           > "$D/game/Data/settings.ini"
echo "better sky (4k)"        > "$D/mods/BetterTextures/textures/sky.dds"
echo "better rock (4k)"       > "$D/mods/BetterTextures/textures/rock.dds"
echo "quest rock (lore)"      > "$D/mods/QuestMod/textures/rock.dds"
echo "a new quest"            > "$D/mods/QuestMod/quests/dragon.quest"
cd "$D"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
MAP=(--dir mods/BetterTextures game/Data --dir mods/QuestMod game/Data --create-target overwrite game/Data)

say "The real disk: the game's Data folder and two mods (QuestMod has the higher priority)"
find game mods -type f | sort

say "usvfs run ${MAP[*]} -- find game/Data -type f"
"$USVFS" run "${MAP[@]}" -- find game/Data -type f | sort

say "A conflict resolved by priority: three copies of textures/rock.dds, the last rule wins"
"$USVFS" run "${MAP[@]}" -- sh -c 'for f in game/Data/textures/*.dds; do printf "%-28s %s\n" "$f" "$(cat "$f")"; done'

say "The virtual tree and where each entry comes from (usvfs dump)"
"$USVFS" dump "${MAP[@]}"

say "A program started in the view keeps its children there, even with a scrubbed environment"
"$USVFS" run "${MAP[@]}" -- env -i /bin/sh -c 'cd game/Data/quests && echo "pwd: $(/bin/pwd)" && cat dragon.quest'

say "Writes: a new file lands in the overwrite folder; an edited mod file changes in its mod"
"$USVFS" run "${MAP[@]}" -- sh -c 'echo "saved game" > game/Data/quests/save.dat && echo "edited" >> game/Data/textures/sky.dds && ls game/Data/quests'
find overwrite -type f | sort
cat mods/BetterTextures/textures/sky.dds

say "Meanwhile every other process sees the real disk: the game folder is unchanged"
find game -type f | sort
cat game/Data/textures/rock.dds
