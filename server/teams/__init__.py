"""Teams, team goals, friend help and friend quests: members playing together."""
