"""What a wallet sees of everything that moved its value: the activity feed (indexed transfers
merged with relayed jobs) and balances read from the index."""
