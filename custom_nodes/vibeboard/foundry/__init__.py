"""Character Foundry: actor cards, actor LoRAs, performances from video (FlashPortrait) and audio, continuity."""
