-- Orthanc auto-route to MarrowMap (the dev PACS in docker-compose; also the README example).
-- Every MR series, once stable (no new instance for StableAge seconds), is sent to the DICOM
-- modality "marrowmap" (DicomModalities: ["MARROWMAP", "<listener host>", 11112]).
-- MarrowMap's results come back as new SR / SC / SEG series, which are not MR and so are never
-- forwarded again: nothing loops.
function OnStableSeries(seriesId, tags, metadata)
  if tags['Modality'] == 'MR' then
    RestApiPost('/modalities/marrowmap/store',
                DumpJson({ Resources = { seriesId }, Asynchronous = true }, true))
  end
end
