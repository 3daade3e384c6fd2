"""Sequencer: the cut as an OpenTimelineIO timeline (recipes in metadata.vibeboard), auto-assembly, interchange
(.otio/.otioz/FCP XML/FCPXML/EDL), audio mix and loudness, captions, and conform to MP4 with PyAV."""
